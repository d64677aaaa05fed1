"""Train: start, watch, stop and resume self-supervised runs; compare runs; baseline vs fine-tune.

Training runs in a subprocess managed by ``sslcore.jobs``; this page only asks the job manager to start or
stop, and a timer redraws from the run folder. The run a browser is watching lives in ``gr.BrowserState``,
so a reload or a second tab re-attaches to it with its whole history.
"""
from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import gradio as gr

from pages.common import (AppContext, api_errors, browser_secret, run_state, data_source, data_source_picker, device_description,
                          message_html, refreshed_runs, register_visitor, reports_errors, run_dropdown)
from sslcore import BACKEND, chunks, finetune, jobs, plots, zerogpu
from sslcore.backend import installed_backends
from sslcore.config import AUTO_BATCH_SIZE, TrainConfig
from sslcore.methods import METHODS

TITLE = "Train"
POLL_SECONDS = 1.0
STATE_KINDS = {"finished": "ok", "failed": "error", "interrupted": "error", "stopped": "info", "paused": "warn"}
RUN_TABLE_HEADERS = ["run", "encoder", "backend", "state", "epochs", "kNN acc", "probe acc", "img/s"]
# Stop and a run's status: file reads and a stop request, milliseconds each; their own unlimited group, so a burst of
# previews, embeddings or audits (each group capped on its own) never holds them in the queue.
CONTROL_EVENTS = dict(concurrency_id="train-control", concurrency_limit=None)


# The TrainConfig settings the form shows, in its order (pairs share a row after the encoder), and their labels;
# each control's kind, choices, range and hint come from the setting itself (sslcore.config.setting).
FORM_SETTINGS = ("encoder", "image_size", "batch_size", "epochs", "budget_minutes", "learning_rate", "optimizer",
                 "precision", "augment", "log_every_steps", "init")
LABELS = {"image_size": "Image size (px)", "learning_rate": "Learning rate", "augment": "Augmentation preset",
          "log_every_steps": "Chart update every N steps", "budget_minutes": "Or train for N minutes",
          "init": "Start from a pretrained encoder (optional)"}
# Optional numbers the form shows as 0 when unset, and what the 0 means.
UNSET_BY_ZERO = {"budget_minutes": "0: train for the epochs above",
                 "batch_size": f"0: {AUTO_BATCH_SIZE}, or a quarter of a smaller training set"}
SETTINGS = {row["name"]: row for row in TrainConfig.describe()}


# On a public Space a run starts from a Hub model or one of the visitor's runs by its id (sslcore.labs), never a path.
SPACE_HINTS = {"init": "start the encoder from a pretrained one: one of your runs (its id, from the run list) or "
                       "hf://OWNER/NAME[@REVISION] (its architecture too; heads start fresh), or a timm "
                       "resnet18 such as hf://timm/resnet18.a1_in1k"}


def setting_control(row: dict, public: bool = False, run_minutes: float | None = None):
    """``run_minutes``: how long one start may train on this public Space (sslcore.labs), said beside the budget."""
    label = LABELS.get(row["name"], row["name"].replace("_", " ").capitalize())
    if row["choices"]:
        return gr.Dropdown(list(row["choices"]), value=row["default"], label=label, info=row["help"])
    if row["kind"] is str:   # a free-text setting (init): empty means unset
        hint = SPACE_HINTS.get(row["name"], row["help"]) if public else row["help"]
        return gr.Textbox(row["default"] or "", label=label, info=hint)
    if row["name"] in UNSET_BY_ZERO:   # a number box cannot be empty: Gradio sends 0 for it
        limit = (f"; this Space trains a run at most {run_minutes:g} minutes per start, then Resume continues it"
                 if public and run_minutes and row["name"] == "budget_minutes" else "")
        return gr.Number(0, precision=0 if row["kind"] is int else None, label=label,
                         info=f"{row['help'].split(';')[0]} ({UNSET_BY_ZERO[row['name']]}{limit})")
    # The range goes in the hint, not in gr.Number's own bounds: Gradio refuses an out-of-range number with a
    # toast that names no setting, where TrainConfig.validate says which setting and why in the status box.
    low, high = row["minimum"], row["maximum"]
    bounds = (f"{low} to {high}" if low is not None and high is not None else f"at least {low}" if low is not None
              else f"at most {high}" if high is not None else "")
    info = f"{row['help']} ({bounds})" if bounds else row["help"]
    return gr.Number(row["default"], precision=0 if row["kind"] is int else None, label=label, info=info)


# ---------------------------------------------------------------------------------------------- views


def _method_control(field: dict):
    """A component for one method hyperparameter, typed by its default, its help text as the hint."""
    default, label, info = field["default"], field["name"].rstrip("_").replace("_", " "), field["help"]
    if isinstance(default, bool):
        return gr.Checkbox(default, label=label, info=info)
    if isinstance(default, int):
        return gr.Number(default, precision=0, label=label, info=info)
    if isinstance(default, float):
        return gr.Number(default, label=label, info=info)
    return gr.Textbox(str(default), label=label, info=info)


def describe(status: dict[str, Any]) -> str:
    """One line of progress: ``running · step 120/550 · epoch 3/10 · 1,650 img/s · 1 min 05 s left``."""
    parts = [status.get("state", "?")]
    if status.get("total_steps"):
        parts.append(f"step {status.get('step', 0)}/{status['total_steps']}")
    if status.get("epochs"):
        parts.append(f"epoch {status.get('epoch', 0)}/{status['epochs']}")
    if status.get("state") in ("running", "stopping"):
        if status.get("images_per_second"):
            parts.append(f"{status['images_per_second']:,.0f} img/s")
        if status.get("budget_left_seconds") is not None:   # a --budget run: the time its budget has left
            parts.append(f"{format_seconds(status['budget_left_seconds'])} of the budget left")
        elif status.get("eta_seconds") is not None:
            parts.append(f"{format_seconds(status['eta_seconds'])} left")
    return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def status_view(context: AppContext, run_id: str | None, status: dict | None) -> tuple[str, str]:
    """(status box, progress bar) for a run's status."""
    if not run_id or status is None:
        return message_html("No run yet: choose settings and press Start, or pick a past run below."), ""
    state = status["state"]
    kind = STATE_KINDS.get(state, "warn")
    text = f"{run_id}: {state}" + (f" — {status['message']}" if status.get("message") and status["message"] != state else "")
    fraction = (status.get("step") or 0) / status["total_steps"] if status.get("total_steps") else 0.0
    if state == "finished":
        fraction = 1.0
    gpu_cost = chunks.ledger_text(context.run_path(run_id))   # only chunked (ZeroGPU) runs have a ledger
    bar = (f'<div class="ssl-progress" title="{fraction:.0%}"><div class="ssl-bar ssl-bar-{html.escape(state)}" '
           f'style="width:{100 * fraction:.1f}%"></div></div>'
           f'<div class="ssl-progress-text">{html.escape(describe(status))}</div>'
           + (f'<div class="ssl-progress-text" id="train-gpu-cost">{html.escape(gpu_cost)}</div>' if gpu_cost else ""))
    return message_html(text, kind), bar


def histories(context: AppContext, run_ids) -> dict[str, dict]:
    """Each shown run's rows, read once per redraw (a run deleted meanwhile is left out)."""
    found = {}
    for run in dict.fromkeys(r for r in run_ids if r):
        try:
            found[run] = context.jobs.history(run)
        except ValueError:
            continue
    return found


def chart(shown: dict[str, dict]):
    return plots.training_figure([(run, history["steps"], history["epochs"]) for run, history in shown.items()])


class SharedCharts:
    """The chart of the runs a page shows, drawn at most once per ``max_age`` seconds for everyone watching them.

    While a run trains, each watching page's timer finds new rows every tick and redraws: 40-80 ms of plotly per
    tick (500-10,000 step rows), so twenty browsers on one run would cost a core. A page within ``max_age`` of
    someone else's drawing gets that chart with the signature it was drawn for; it records that signature, so its
    next tick sees the run moved on and asks again, and the last rows of a finished run are never left out.
    """

    def __init__(self, max_age: float = POLL_SECONDS, kept: int = 64, clock: Callable[[], float] = time.monotonic):
        self.max_age, self.kept, self.clock = max_age, kept, clock
        self._drawn: OrderedDict[tuple, tuple[Any, Any, float]] = OrderedDict()   # runs: (chart, signature, when)
        self._lock = threading.Lock()

    def get(self, runs: tuple, signature: Any, draw: Callable[[], Any]) -> tuple[Any, Any]:
        """(chart, the signature it shows) for ``runs``, drawn afresh only when the last one is out of date."""
        with self._lock:
            drawn = self._drawn.get(runs)
        if drawn and (drawn[1] == signature or self.clock() - drawn[2] < self.max_age):
            return drawn[0], drawn[1]
        chart_now, when = draw(), self.clock()
        with self._lock:
            self._drawn[runs] = (chart_now, signature, when)
            self._drawn.move_to_end(runs)
            while len(self._drawn) > self.kept:
                self._drawn.popitem(last=False)
        return chart_now, signature


CHARTS = SharedCharts()


def runs_table(context: AppContext) -> list[list[Any]]:
    percent = lambda v: f"{v:.1%}" if isinstance(v, (int, float)) else "—"
    return [[r["run_id"], r["encoder"], r["backend"], run_state(r), r["epochs"],
             percent(r["knn_accuracy"]), percent(r["probe_accuracy"]),
             f"{r['images_per_second']:,.0f}" if r["images_per_second"] else "—"] for r in context.jobs.runs()]


def finetune_view(context: AppContext, run_id: str | None):
    result = finetune.saved_result(context.run_path(run_id)) if run_id else None
    return plots.finetune_figure(result or {})


# ---------------------------------------------------------------------------------------------- page


def build(context: AppContext, tab: gr.Tab) -> None:
    jobs_ = context.jobs
    # On ZeroGPU the page itself trains the run, one GPU call after another (sslcore.zerogpu).
    chunked = isinstance(context.manager, zerogpu.ChunkedJobManager)
    current_run = gr.BrowserState(None, storage_key="sslcore-current-run", secret=browser_secret(jobs_.root))
    seen = gr.State(None)   # what the chart last showed, so an idle tick redraws nothing
    timer = gr.Timer(POLL_SECONDS)
    defaults = TrainConfig()
    method_controls: dict[tuple[str, str], Any] = {}   # (method, setting) -> its component

    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            method = gr.Dropdown(list(METHODS), value=defaults.method, label="Method")
            method_info = gr.Markdown(METHODS[defaults.method].description, elem_classes=["ssl-hint"])
            groups = {}
            for name, method_class in METHODS.items():
                with gr.Accordion(f"{name} settings", open=False, visible=name == defaults.method) as group:
                    for field in method_class.Params.describe():
                        method_controls[name, field["name"]] = _method_control(field)
                groups[name] = group
            settings_form = {"encoder": setting_control(SETTINGS["encoder"])}
            dataset, data_text = data_source_picker(context, "train")
            for first in range(1, len(FORM_SETTINGS), 2):   # in pairs; an odd one out has a row of its own
                pair = FORM_SETTINGS[first: first + 2]
                with gr.Row():
                    # On ZeroGPU the visitor's own GPU quota bounds a run, not the Space's minutes per start.
                    limit = None if chunked else context.labs.settings.run_minutes
                    settings_form.update({name: setting_control(SETTINGS[name], context.public, limit)
                                          for name in pair})
            backends = ["torch"] if chunked else installed_backends()
            backend = gr.Dropdown(backends, value=BACKEND if BACKEND in backends else backends[0], label="Keras backend",
                                  interactive=not chunked,
                                  info=f"this app computes on {device_description()}; " + (
                                      "ZeroGPU runs PyTorch only" if chunked else "training runs in its own process"))
            if chunked:
                gr.Markdown(zerogpu.ABOUT_CHUNKS.format(seconds=context.manager.seconds), elem_id="train-zerogpu-note",
                            elem_classes=["ssl-hint"])
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start", min_width=80)
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop", min_width=80, interactive=False)
                resume = gr.Button("Resume", elem_id="train-resume", min_width=80, interactive=False)
        with gr.Column(scale=2):
            status_box = gr.Markdown(elem_id="train-status")
            progress = gr.HTML(elem_id="train-progress")
            figure = gr.Plot(show_label=False, elem_id="train-chart")
            with gr.Row():
                run_picker = run_dropdown("Run shown", elem_id="train-run-picker",
                                          info="the run this browser follows (kept across reloads)")
                overlay = run_dropdown("Overlay another run", info="drawn dashed on the same charts")
            with gr.Accordion("Baseline vs fine-tune (labelled data)", open=False):
                gr.Markdown("Trains the same encoder architecture from scratch and fine-tunes this run's pretrained "
                            "encoder, each with a linear head, on the labelled training split; compares their "
                            "validation accuracy per epoch (as in keras.io's semi-supervised SimCLR example).")
                with gr.Row():
                    finetune_epochs = gr.Slider(1, finetune.MAX_EPOCHS, 10, step=1, label="Epochs (each model)")
                    finetune_button = gr.Button("Train baseline + fine-tune", elem_id="train-finetune")
                finetune_status = gr.Markdown()
                finetune_plot = gr.Plot(show_label=False, elem_id="finetune-chart")

    runs_frame = gr.Dataframe(headers=RUN_TABLE_HEADERS, label="Runs in the runs folder (click one to show it)",
                              interactive=False, elem_id="train-runs", max_height=320,
                              column_widths=["34%", "9%", "10%", "10%", "8%", "9%", "10%", "10%"])

    # -- handlers --------------------------------------------------------------------------------------
    def form_settings(form: dict) -> tuple[dict, str]:
        """(TrainConfig settings, backend) from the form's values, keyed by component."""
        chosen = form[method]
        settings = {name: form[control] for name, control in settings_form.items()}
        settings.update({name: None for name in UNSET_BY_ZERO if not settings.get(name)})
        settings.update(method=chosen, data=data_source(context, form[dataset], form[data_text]),
                        method_params={param: form[control] for (owner, param), control in method_controls.items()
                                       if owner == chosen})
        return settings, form[backend]

    @reports_errors(outputs=2)
    def start_from_form(form: dict):
        settings, chosen_backend = form_settings(form)
        run_id = jobs_.start(settings, chosen_backend)
        return run_id, message_html(f"{run_id}: queued", "warn")

    @reports_errors(outputs=1)
    def stop_current(run_id):
        status = jobs_.stop(_required(run_id))
        return message_html(f"{run_id}: {status['state']} — {status['message']}", "warn")

    @reports_errors(outputs=1)
    def resume_current(run_id):
        jobs_.resume(_required(run_id))
        return message_html(f"{run_id}: queued to resume from its last checkpoint", "warn")

    def refresh(run_id, overlay_id, seen_before, force=False) -> dict:
        """What the timer redraws, keyed by component; a part that did not change is left out."""
        signature = [list(map(str, jobs_.signature(run))) if run else None for run in (run_id, overlay_id)]
        if not force and seen_before and seen_before.get("signature") == signature:
            return {seen: seen_before}   # Gradio reads an empty dict as one value, not as "no updates"
        try:
            status = jobs_.status(run_id) if run_id else None
        except ValueError:   # the run folder was deleted under us
            run_id, status = None, None
        state = status["state"] if status else None
        shown = histories(context, (run_id, overlay_id))
        box, bar = status_view(context, run_id, status)
        # The run lists change when a run changes state or finishes an epoch, not with every step.
        progress_mark = f"{state}:{len(shown[run_id]['epochs']) if run_id in shown else 0}"
        drawn, drawn_for = CHARTS.get((run_id, overlay_id), signature, lambda: chart(shown))
        updates = {status_box: box, progress: bar, figure: drawn,
                   seen: {"signature": drawn_for, "state": progress_mark, "run": run_id},
                   stop: gr.update(interactive=state in jobs.LIVE_STATES),
                   resume: gr.update(interactive=state in jobs.RESUMABLE_STATES)}
        if force or not seen_before or seen_before.get("state") != progress_mark or seen_before.get("run") != run_id:
            updates.update({runs_frame: gr.update(value=runs_table(context)), run_picker: refreshed_runs(context, run_id),
                            overlay: refreshed_runs(context, overlay_id, optional=True)})
        return updates

    def attach(run_id, visitor_key, request: gr.Request):
        """Page (re)load: follow the remembered run, or else whatever this visitor has training right now."""
        register_visitor(visitor_key, request)
        try:
            jobs_.existing_run(run_id)
        except ValueError:
            newest = jobs_.runs()[:1]
            run_id = jobs_.live_run() or (newest[0]["run_id"] if newest else None)
        return show_run(run_id, None)

    def show_run(run_id, overlay_id):
        return {current_run: run_id, **refresh(run_id, overlay_id, None, force=True),
                finetune_plot: finetune_view(context, run_id)}

    @reports_errors(outputs=2)
    def compare_with_baseline(run_id, epochs, progress=gr.Progress()):
        def on_epoch(name, epoch, total, logs):
            done = epoch + (total if name == "finetuned" else 0)
            progress(done / (2 * total), desc=f"{name}: epoch {epoch}/{total}, val acc {logs.get('val_accuracy', 0):.1%}")
        result = zerogpu.baseline_vs_finetune(context.run_path(run_id, own=True), epochs=int(epochs), on_epoch=on_epoch)
        final = result["final_val_accuracy"]
        return plots.finetune_figure(result), message_html(
            f"baseline {final['baseline']:.1%} · fine-tuned {final['finetuned']:.1%} validation accuracy after "
            f"{result['epochs']} epochs on {result['labelled_images']} labelled images ({result['seconds']:.0f} s)", "ok")

    # -- events ----------------------------------------------------------------------------------------
    method.change(lambda name: [gr.update(value=METHODS[name].description)] +
                  [gr.update(visible=owner == name) for owner in groups], method, [method_info, *groups.values()],
                  api_name="show_method_settings", api_visibility="private", queue=False)
    form = {method, dataset, data_text, backend, *settings_form.values(), *method_controls.values()}
    light = dict(concurrency_id="train-actions", concurrency_limit=4)
    started = start.click(start_from_form, form, [current_run, status_box], api_name="start_from_form",
                          api_visibility="undocumented", **light)
    # Stop never waits behind a Start (which checks settings and data) or behind any CPU-heavy page.
    stop.click(stop_current, current_run, status_box, api_name="stop_current", api_visibility="undocumented",
               **CONTROL_EVENTS)
    resumed = resume.click(resume_current, current_run, status_box, api_name="resume_current",
                           api_visibility="undocumented", **light)
    if chunked:
        driver_done = gr.State(None)

        def drive_chunks(run_id):
            """One GPU call after another until the run finishes, stops or pauses; the timer draws the charts."""
            if not run_id or jobs_.status(run_id)["state"] not in ("starting",):
                return
            for status_now in jobs_.drive(run_id):
                yield status_now.get("state")

        chunk_events = dict(concurrency_id="gpu-chunks", concurrency_limit=4, show_progress="hidden")
        started.success(drive_chunks, current_run, driver_done, api_name="drive_chunks", api_visibility="private",
                        **chunk_events)
        resumed.success(drive_chunks, current_run, driver_done, api_name="drive_resumed_chunks",
                        api_visibility="private", **chunk_events)

    view_outputs = [status_box, progress, figure, seen, runs_frame, run_picker, overlay, stop, resume]
    # The poll has its own unlimited group, so a chart refresh never waits behind a preview or an embedding.
    timer.tick(refresh, [current_run, overlay, seen], view_outputs, api_name="poll_training",
               api_visibility="private", concurrency_id="poll", concurrency_limit=None, show_progress="hidden")
    context.demo.load(attach, [current_run, context.visitor_key], [current_run, *view_outputs, finetune_plot], api_name="attach_training",
                      api_visibility="private", concurrency_id="poll", concurrency_limit=None)
    run_picker.input(show_run, [run_picker, overlay], [current_run, *view_outputs, finetune_plot],
                     api_name="show_run", api_visibility="undocumented", concurrency_id="poll", concurrency_limit=None)
    tab.select(lambda run_id, overlay_id: refresh(run_id, overlay_id, None, force=True), [current_run, overlay],
               view_outputs, api_name="refresh_training_view", api_visibility="private", concurrency_id="poll",
               concurrency_limit=None)

    def select_row(overlay_id, event: gr.SelectData):
        row = event.row_value or runs_table(context)[event.index[0]]
        return show_run(row[0], overlay_id)

    runs_frame.select(select_row, overlay, [current_run, *view_outputs, finetune_plot], api_name="pick_run_from_table",
                      api_visibility="private", concurrency_id="poll", concurrency_limit=None)
    overlay.input(lambda run_id, overlay_id: chart(histories(context, (run_id, overlay_id))), [current_run, overlay], figure,
                  api_name="overlay_run", api_visibility="undocumented", concurrency_id="poll", concurrency_limit=None)
    finetune_button.click(compare_with_baseline, [current_run, finetune_epochs], [finetune_plot, finetune_status],
                          api_name="baseline_vs_finetune", concurrency_id="finetune", concurrency_limit=1)
    register_api(jobs_)


def register_api(jobs_: jobs.JobManager) -> None:
    """JSON endpoints for scripts (gradio_client): the same actions as the page's buttons, without the page."""
    @api_errors
    def start_training(settings: dict, backend: str = "") -> str:
        """Validate the training settings (TrainConfig fields) and queue a run; returns its run id."""
        return jobs_.start(settings, backend or None)

    @api_errors
    def stop_training(run_id: str) -> dict:
        """Ask a run to stop after its current step (it saves a checkpoint and stays resumable)."""
        return jobs_.stop(run_id)

    @api_errors
    def resume_training(run_id: str) -> dict:
        """Queue a stopped, failed or interrupted run to continue from its last checkpoint."""
        jobs_.resume(run_id)
        return jobs_.status(run_id)

    @api_errors
    def training_status(run_id: str, since_step: int = -1) -> dict:
        """A run's state and progress, with every per-epoch row and the per-step rows after ``since_step`` (a
        poller passes the last step it has and gets only what is new; -1, the default, gets every row)."""
        history = jobs_.history(run_id, after_step=int(since_step))
        return {**jobs_.status(run_id), "step_rows": history["steps"], "epoch_rows": history["epochs"]}

    def list_runs() -> list:
        """Every run in the runs folder, newest first, with its final figures."""
        return jobs_.runs()

    for endpoint in (start_training, resume_training):
        gr.api(endpoint, api_name=endpoint.__name__, concurrency_id="train-actions", concurrency_limit=4)
    for endpoint in (stop_training, training_status):
        gr.api(endpoint, api_name=endpoint.__name__, **CONTROL_EVENTS)
    gr.api(list_runs, api_name="list_runs", concurrency_id="poll", concurrency_limit=None)


def _required(run_id: str | None) -> str:
    if not run_id:
        raise ValueError("No run selected: start one, or pick one under 'Run shown'")
    return run_id
