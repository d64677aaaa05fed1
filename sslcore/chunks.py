"""Training as a sequence of time-boxed chunks, for hosts that lend an accelerator one call at a time.

A ZeroGPU Space attaches a GPU only while one decorated call runs, in a forked worker, for at most a few
minutes, and charges the visitor's daily quota for it. So a run there is many calls of :func:`train_chunk`,
each continuing from the run folder's last checkpoint and stopping, with a new checkpoint, just before its
time is up (mid-epoch if need be). The run folder is the whole state, so a chunk may run in any process, and
a run trained in chunks ends exactly as one trained in one go (tests/test_chunked.py).

:class:`ChunkedRun` is the loop in the app's process that asks for one chunk after another and turns a
failed call (quota spent, no GPU free, the call ran past its time) into a paused run that says what happened
and resumes from its checkpoint. ``gpu_chunks.jsonl`` in the run folder records what each call cost.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sslcore.runs import RunDir

LEDGER_FILE = "gpu_chunks.jsonl"
DEFAULT_CHUNK_SECONDS = 60.0
# What a chunk asks of its host beyond its training budget: the trainer leaves room for one more step and the
# checkpoint inside the budget, but the host's clock also covers the fork and the worker's exit.
HOST_GRACE_SECONDS = 15.0


def train_chunk(run_path: str, seconds: float, max_steps: int | None = None) -> dict:
    """Continue the run in ``run_path`` for about ``seconds`` (start-up included), or ``max_steps`` steps if that
    comes first; returns the trainer's summary.

    Plain arguments and a plain dict result: on ZeroGPU they cross a process boundary by pickling.
    """
    from sslcore.config import TrainConfig
    from sslcore.trainer import Trainer

    started = time.perf_counter()
    run = RunDir(run_path)
    config = TrainConfig.from_run_config(run.config())
    resume = run.latest_checkpoint() is not None
    if not resume:
        # A first chunk that died before its first checkpoint may have left rows behind: start clean.
        for path in (run.metrics_path, run.steps_path):
            path.unlink(missing_ok=True)
    first_step = _FirstStepClock(started)
    trainer = Trainer(config, run_path, callbacks=[first_step])
    # The run folder's stop request is the driver's (ChunkedRun) to clear: one made before this call began its
    # first step still stops it.
    # Only a stop the visitor asked for exports the models: a chunk that ends on its time slice is one of many,
    # and exporting after each would spend seconds of the visitor's GPU quota per call on files the next call
    # replaces.
    summary = trainer.fit(resume=resume, stop=run, max_seconds=seconds, max_steps=max_steps,
                          export_on_stop=("requested",))
    return {**summary, "startup_seconds": first_step.seconds, "chunk_seconds": time.perf_counter() - started,
            "steps_per_epoch": trainer.steps_per_epoch}


class _FirstStepClock:
    """Seconds from the chunk's start to its first logged step: the start-up a chunk pays before it trains."""

    def __init__(self, started: float):
        self.started, self.seconds = started, None

    def on_train_begin(self, info): ...

    def on_step_end(self, row):
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.started

    def on_epoch_end(self, row): ...

    def on_train_end(self, summary): ...


# ------------------------------------------------------------------------------------------- the ledger


class Ledger:
    """What each GPU call of a run cost (``gpu_chunks.jsonl``), and what more training will cost."""

    def __init__(self, run: RunDir):
        self.run, self.path = run, run.path / LEDGER_FILE

    def append(self, row: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def gpu_seconds(self) -> float:
        return sum(row["seconds"] for row in self.rows())

    def seconds_per_epoch(self, steps_per_epoch: int) -> float | None:
        """GPU seconds one more epoch costs at the rate so far (start-up and evaluation included)."""
        rows = [row for row in self.rows() if row.get("steps", 0) > 0]
        steps = sum(row["steps"] for row in rows)
        if not steps:
            return None
        return sum(row["seconds"] for row in rows) / steps * steps_per_epoch

    def describe(self) -> str:
        rows = self.rows()
        if not rows:
            return ""
        steps_per_epoch = next((row["steps_per_epoch"] for row in reversed(rows) if row.get("steps_per_epoch")), None)
        text = f"GPU time spent on this run: {self.gpu_seconds():.0f} s in {len(rows)} call{'s' if len(rows) != 1 else ''}"
        per_epoch = self.seconds_per_epoch(steps_per_epoch) if steps_per_epoch else None
        if per_epoch:
            text += f" · one more epoch costs about {per_epoch:.0f} s of GPU quota"
        return text


# ------------------------------------------------------------------------------------------- the driver


@dataclass
class GpuFailure:
    """Why a GPU call failed, said the way a visitor needs it: what happened and what to do."""

    kind: str      # quota | no_gpu | overtime | error
    message: str


def explain_gpu_failure(error: BaseException, checkpoint_step: int | None) -> GpuFailure:
    """Map the host's error (ZeroGPU raises gr.Error with a title such as "ZeroGPU quota exceeded")."""
    title = str(getattr(error, "title", "") or "")
    detail = str(getattr(error, "message", "") or error).strip()
    text = f"{title} {detail}".lower()
    saved = (f"Nothing was lost: the run is saved at step {checkpoint_step}." if checkpoint_step
             else "No checkpoint had been written yet, so Resume starts the run from its first step.")
    if "quota" in text or "limit" in text:
        return GpuFailure("quota", f"Paused: the GPU quota is used up ({detail}). {saved} Your ZeroGPU quota refills "
                                   "daily (the message says when); logged-in and PRO visitors get more. Press Resume then.")
    if "queue" in text or "no gpu" in text or "unavailable" in text or "client error" in text:
        return GpuFailure("no_gpu", f"Paused: no GPU was free ({detail}). {saved} Press Resume in a minute or two.")
    if "aborted" in text or "duration" in text or "worker error" in text:
        return GpuFailure("overtime", f"Paused: the GPU call ran past its time and was stopped ({detail}). {saved} "
                                      "Press Resume to continue from there.")
    return GpuFailure("error", f"Paused: the GPU call failed ({type(error).__name__}: {detail}). {saved} "
                               "Press Resume to retry.")


class ChunkedRun:
    """Trains a run folder by calling ``chunk_call(run_path, seconds)`` until it finishes, is stopped or pauses.

    Between two calls the run reads as paused: whoever iterates may simply stop (a closed page), and the run
    must then be resumable rather than seem to wait for a call that never comes.

    Iterating it yields the run's status after each call, so a page can redraw. Stopping (the run folder's
    stop request) is honoured inside a chunk by the trainer and between chunks here.
    """

    def __init__(self, run_path: str | os.PathLike, chunk_call: Callable[[str, float], dict],
                 chunk_seconds: float = DEFAULT_CHUNK_SECONDS):
        self.run = RunDir(run_path)
        self.chunk_call, self.chunk_seconds = chunk_call, chunk_seconds
        self.ledger = Ledger(self.run)

    def __iter__(self) -> Iterator[dict]:
        from sslcore.trainer import TrainingDiverged

        run = self.run
        while True:
            status = run.status()
            if status.get("state") == "finished":
                return
            progress = {k: status[k] for k in ("step", "total_steps", "epoch", "epochs") if k in status}
            if run.stop_path.exists():
                run.clear_stop()
                # No GPU call just to export (it would cost the visitor a call's start-up from their quota): the
                # models stay those of the last stop or none; Resume, then Stop during a call, exports them.
                run.write_status("stopped", "stopped between GPU calls; Resume continues from the checkpoint",
                                 pid=None, **progress)
                yield run.status()
                return
            number = len(self.ledger.rows()) + 1
            # The app's own pid: the run counts as starting (not interrupted) while this loop waits for a GPU.
            run.write_status("pending", f"asking for a GPU for call {number}", pid=os.getpid(), **progress)
            step_before = _checkpoint_step(run)
            started = time.perf_counter()
            try:
                summary = self.chunk_call(str(run.path), self.chunk_seconds)
            except Exception as error:   # the host's failure, or the chunk's: the run pauses either way
                failure = explain_gpu_failure(error, _checkpoint_step(run))
                self.ledger.append({"chunk": number, "seconds": round(time.perf_counter() - started, 3),
                                    "steps": _checkpoint_step(run) - step_before, "outcome": failure.kind})
                if isinstance(error, TrainingDiverged):
                    yield run.status()   # the trainer already wrote a failed status that says what to change
                    return
                run.write_status("paused", failure.message, pid=None, **{**progress, **_progress(run)})
                yield run.status()
                return
            self.ledger.append({"chunk": number, "seconds": round(time.perf_counter() - started, 3),
                                "startup_seconds": summary.get("startup_seconds"),
                                "steps_per_epoch": summary.get("steps_per_epoch"),
                                "steps": _checkpoint_step(run) - step_before, "outcome": summary["state"]})
            if summary["state"] == "finished":
                yield run.status()
                return
            if summary.get("stop_reason") == "requested":
                yield run.status()   # a Stop pressed during the call: the trainer stopped, saved and said so
                return
            if run.stop_path.exists():
                continue   # pressed just after the call's last step: the loop's top writes the stopped status
            # Paused until the loop is asked to go on: a host like Gradio simply stops iterating when the visitor's
            # page goes away, and the run must then read as resumable, not as waiting for a call that never comes.
            after = run.status()
            run.write_status("paused", f"between GPU calls: call {number} done; the page asks for the next one now "
                                       "(if it was closed, Resume continues from the checkpoint)", pid=None,
                             **{k: after[k] for k in ("step", "total_steps", "epoch", "epochs") if k in after})
            yield run.status()


def _checkpoint_step(run: RunDir) -> int:
    latest = run.latest_checkpoint()
    return int(latest.stem.split("-")[1]) if latest is not None else 0


def _progress(run: RunDir) -> dict:
    step = _checkpoint_step(run)
    return {"step": step} if step else {}


def ledger_text(run_path: str | os.PathLike) -> str:
    return Ledger(RunDir(Path(run_path))).describe()
