"""What every page shares: the app's context, run pickers, the data-source picker, and how errors are shown.

Pages lay out components and call sslcore; this module keeps the few UI helpers they would otherwise copy.
"""
from __future__ import annotations

import functools
import html
import os
import re
import secrets
import threading
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio.context import LocalContext
from gradio.utils import get_upload_folder

from sslcore.credentials import read_token
from sslcore.data import DataError, describe_sources
from sslcore.jobs import JobManager
from sslcore.labs import LOCAL, Lab, Labs, visitor_id

# Errors a user can fix (bad settings, a file that is not an image, a run that has not finished): shown as
# they are. Anything else is a bug or the machine (out of memory); it is shown too, and the app keeps serving.
USER_ERRORS = (ValueError, DataError, FileNotFoundError)
FOLDER_CHOICE = "folder (path below)"


def hub_token(typed: str | None = None):
    """The token to read the Hub with: the visitor's own, else the server's where it is the user's own, else none
    (``False``: public repos only; on a shared Space the server's credentials are its owner's)."""
    return read_token(typed or None)


class AppContext:
    """What every page is built with: the job manager, the Blocks, and the lab of whoever is calling.

    ``jobs`` looks like a JobManager but answers for the visitor of the current request (``sslcore.labs``): on a
    public Space each visitor sees and drives only their own runs; locally everyone is the one visitor.
    ``manager`` is the unfiltered JobManager, for what is not about any one run (its kind, the chunk length).
    """

    def __init__(self, jobs: JobManager, demo: gr.Blocks | None, labs: Labs | None = None):
        self.manager, self.demo = jobs, demo
        self.labs = labs or Labs(jobs, received_dir=get_upload_folder())
        self.jobs = _VisitorJobs(self)
        self._visitor_key: gr.BrowserState | None = None

    @property
    def visitor_key(self) -> gr.BrowserState:
        """The visitor's key in their browser; made on first use, inside the Blocks being built."""
        if self._visitor_key is None:
            self._visitor_key = visitor_key_state(self.manager.root)
        return self._visitor_key

    @property
    def public(self) -> bool:
        return self.labs.public

    def lab(self) -> Lab:
        return self.labs.lab(current_visitor() if self.labs.public else LOCAL)

    def run_path(self, run_id: str | None, *, own: bool = False) -> Path:
        """A run the caller may read (``own``: one they may change or publish)."""
        if not run_id:
            raise ValueError("Pick a run first (the run list shows the finished ones)")
        lab = self.lab()
        return (lab.own_run(run_id) if own else lab.existing_run(run_id)).path

    def model_source(self, choice: str | None) -> str | Path:
        """A run picked from the list, or a Hub model typed into it (``USER/NAME`` or ``hf://USER/NAME``)."""
        from sslcore.hub import is_hub_id, is_hub_model

        choice = (choice or "").strip()
        if self.public:
            # By its form alone, passed on as hf://: a look at the disk (here or in sslcore.hub.is_hub_model later)
            # would tell a stranger which paths exist, or take "runs/ID" for another visitor's run folder.
            if choice and is_hub_id(choice):
                return choice if choice.startswith("hf://") else f"hf://{choice}"
        elif choice and is_hub_model(choice) and not (self.manager.root / choice).exists():
            return choice
        return self.run_path(choice)

    def embedder(self, choice: str | None):
        """What embeds a folder for the audit and few-label pages: a run picked from the list, or an encoder on the Hub
        typed into it (a timm resnet18, a pushed model), loaded as it is (``sslcore.model_encoder``)."""
        from sslcore import explore

        source = self.model_source(choice)
        return explore.pretrained_encoder(source, hub_token()) if isinstance(source, str) else source


class _VisitorJobs:
    """The job manager as the calling visitor may use it; resolved per call, since pages keep it from build time."""

    def __init__(self, context: AppContext):
        self._context = context

    @property
    def root(self) -> Path:
        return self._context.manager.root

    def __getattr__(self, name: str):
        return getattr(self._context.lab(), name)


# ---------------------------------------------------------------------------------------------- visitors

VISITOR_KEY_STORAGE = "sslcore-visitor"
_VISITOR_KEY = re.compile(r"^[A-Za-z0-9_-]{16,128}$")   # what remember_visitor makes (32 characters), with room
_SESSIONS: "OrderedDict[str, str]" = OrderedDict()   # Gradio session -> the visitor key its browser keeps
_SESSIONS_KEPT = 100_000                              # least recently used go first (a few MB at most)
_SESSIONS_LOCK = threading.Lock()


def current_visitor() -> str | None:
    """The visitor behind the request being served: the key their browser keeps (``gr.BrowserState``, so a reload
    stays in the same lab), else their Gradio session (a ``gradio_client`` caller is one visitor per Client)."""
    request = LocalContext.request.get(None)
    session = getattr(request, "session_hash", None) if request is not None else None
    if not session:
        return None
    with _SESSIONS_LOCK:
        key = _SESSIONS.get(session)
        if key is not None:   # in use: the last to be forgotten when strangers flood the table
            _SESSIONS.move_to_end(session)
    return visitor_id(key or f"session:{session}")


def remember_visitor(key: str | None, request: gr.Request) -> str:
    """Page load: tie this browser session to the visitor key kept in the browser, making one on the first visit."""
    if not is_visitor_key(key):
        key = secrets.token_urlsafe(24)
    register_visitor(key, request)
    return key


def register_visitor(key: str | None, request: gr.Request | None) -> None:
    """Other load events take the key too, so whichever runs first already answers for the right lab."""
    session = getattr(request, "session_hash", None)
    if session and is_visitor_key(key):
        with _SESSIONS_LOCK:
            _SESSIONS[session] = key
            _SESSIONS.move_to_end(session)
            while len(_SESSIONS) > _SESSIONS_KEPT:
                _SESSIONS.popitem(last=False)


def is_visitor_key(key: Any) -> bool:
    """A key as the app makes them: long enough not to be guessed, short enough not to fill the session table."""
    return isinstance(key, str) and bool(_VISITOR_KEY.match(key))


def visitor_key_state(root: Path) -> gr.BrowserState:
    return gr.BrowserState(None, storage_key=VISITOR_KEY_STORAGE, secret=browser_secret(root))


# ---------------------------------------------------------------------------------------------- messages


def toast(message: str) -> None:
    """A warning toast; Gradio renders its text as HTML, and messages carry visitors' file and folder names."""
    gr.Warning(html.escape(str(message)))


def message_html(text: str, kind: str = "info") -> str:
    """A status line for a gr.Markdown box; ``kind`` is info, ok, warn or error (coloured by the app's CSS)."""
    return f'<div class="ssl-msg ssl-{kind}">{html.escape(str(text))}</div>'


def reports_errors(outputs: int, status_at: int = -1) -> Callable:
    """Turn an exception into a toast plus an error line in the page's status box; other outputs stay as they were.

    ``outputs`` is how many values the event returns; ``status_at`` which of them is the status box.
    """
    def decorate(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as error:
                message = str(error)
            except Exception as error:  # noqa: BLE001 - the page must say what happened and keep serving
                traceback.print_exc()
                message = f"Something went wrong ({type(error).__name__}: {error}). The app is still running; try again."
                if "memory" in str(error).lower() or "ResourceExhausted" in type(error).__name__:
                    message += " It looks like the machine ran out of memory: use smaller images or fewer of them."
            toast(message)
            values = [gr.skip()] * outputs
            values[status_at] = message_html(message, "error")
            return values[0] if outputs == 1 else tuple(values)
        return guarded
    return decorate


def api_errors(fn: Callable) -> Callable:
    """For API-only endpoints: a user error reaches a gradio_client caller as gr.Error with the message."""
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from error
    return guarded


# ---------------------------------------------------------------------------------------------- pickers


def run_choices(context: AppContext, need: str | None = None) -> list[tuple[str, str]]:
    """(label, run id) for the run dropdowns; ``need`` = "encoder" or "classifier" keeps the usable runs."""
    choices = []
    for row in context.jobs.runs():
        if need and not row.get(f"has_{need}"):
            continue
        knn = row.get("knn_accuracy")
        figures = f" · kNN {knn:.1%}" if isinstance(knn, (int, float)) else ""
        choices.append((f"{row['run_id']} · {row['encoder']} · {run_state(row)}{figures}", row["run_id"]))
    return choices


def run_state(row: dict) -> str:
    """A run list row's state, saying where its models stopped when they are a stopped run's (they can be explored,
    classified with and pushed like a finished run's)."""
    stopped = row.get("stopped_at")
    if not stopped:
        return row["state"]
    return stopped if row["state"] == "stopped" else f"{row['state']} · models {stopped}"


def run_dropdown(label: str = "Run", **kwargs) -> gr.Dropdown:
    return gr.Dropdown(choices=[], value=None, label=label, allow_custom_value=True, **kwargs)


def refreshed_runs(context: AppContext, current: str | None, need: str | None = None, optional: bool = False) -> dict:
    """New choices for a run dropdown, keeping the current pick when it still exists.

    Otherwise the newest run is picked, or, for an ``optional`` dropdown (an overlay), nothing.
    """
    choices = run_choices(context, need)
    ids = [run_id for _, run_id in choices]
    if optional:
        return gr.update(choices=[("none", "")] + choices, value=current if current in ids else "")
    return gr.update(choices=choices, value=current if current in ids else (ids[0] if ids else None))


HF_CHOICE = "Hugging Face dataset (id below)"
UPLOAD_TYPES = ["image", ".zip", ".tar", ".gz", ".tgz"]


def base_sources(context: AppContext) -> list[str]:
    """What any visitor may pick: the loadable built-in sets, a Hub dataset, and locally a server folder."""
    return describe_sources() + [HF_CHOICE] + ([] if context.public else [FOLDER_CHOICE])


def data_source_picker(context: AppContext, elem_prefix: str | None = None, *, own: str | None = None,
                       label: str = "Dataset") -> tuple[gr.Dropdown, gr.Textbox]:
    """The data a page trains or previews on: built-in sets, the visitor's uploads (``upload:NAME``), a Hugging Face
    dataset (``hf:OWNER/NAME``) and, except on a public Space, a folder on this machine. ``own``: the label of a
    first choice, picked at the start, that means "none of these" (value ""; ``data_source`` gives None for it)."""
    where = "" if context.public else "; a folder holds one subfolder per class, or just images"
    first = [(own, "")] if own else []
    dropdown = gr.Dropdown(first + base_sources(context), value="" if own else "digits", label=label,
                           allow_custom_value=True, info=f"digits ships with scikit-learn; or upload your images below{where}",
                           elem_id=f"{elem_prefix}-data" if elem_prefix else None)
    text = gr.Textbox("", label="Hugging Face dataset", placeholder="OWNER/NAME[@REVISION][:CONFIG], e.g. uoft-cs/cifar10",
                      visible=False)

    def show_text(choice):
        return gr.update(visible=choice in (HF_CHOICE, FOLDER_CHOICE),
                         label="Folder path" if choice == FOLDER_CHOICE else "Hugging Face dataset",
                         placeholder="/path/to/images" if choice == FOLDER_CHOICE else
                         "OWNER/NAME[@REVISION][:CONFIG], e.g. uoft-cs/cifar10")

    dropdown.change(show_text, dropdown, text, api_name="show_data_text", api_visibility="private", queue=False)
    upload_buttons(context, dropdown, lambda lab: first + base_sources(context) + lab.uploads(), elem_prefix)
    return dropdown, text


def data_source(context: AppContext, choice: str | None, text: str | None, *, own: bool = False) -> str | None:
    """The sslcore source string for a picker's values, checked against what the caller may read; with ``own`` (a
    picker with an ``own`` choice), None when that choice is picked."""
    text = (text or "").strip()
    if own and not choice and not text:
        return None
    if choice == HF_CHOICE:
        if not text:
            raise ValueError("Type the Hugging Face dataset id (OWNER/NAME) in the box under 'Dataset'")
        return text if text.startswith("hf:") else f"hf:{text}"
    if choice == FOLDER_CHOICE or (text and choice in (None, "")):
        if not text:
            raise ValueError("Type the path of your image folder in 'Folder path'")
        choice = text if text.startswith(("folder:", "upload:", "hf:")) else f"folder:{text}"
    return context.lab().resolve_source(choice or "digits")


def folder_picker(context: AppContext, label: str, *, own_data: str | None = None, elem_id: str | None = None) -> gr.Dropdown:
    """An image folder for the Audit and few-label pages: an upload of the visitor's, ``own_data`` (the run's own
    images) when given, and locally any path typed in."""
    first = [(own_data, "")] if own_data else []
    hint = "upload images or an archive below" + ("" if context.public else ", or type a folder path")
    dropdown = gr.Dropdown(first, value="" if own_data else None, label=label, allow_custom_value=True, info=hint,
                           elem_id=elem_id)
    upload_buttons(context, dropdown, lambda lab: first + lab.uploads(), elem_id)
    return dropdown


def upload_buttons(context: AppContext, target: gr.Dropdown, choices: Callable[[Lab], list],
                   elem_prefix: str | None = None) -> None:
    """Upload buttons that file images or archives into the visitor's lab and pick the new upload in ``target``;
    ``target``'s choices are refreshed with the visitor's uploads whenever the page loads."""
    with gr.Row():
        named = (lambda part: f"{elem_prefix}-{part}") if elem_prefix else (lambda part: None)
        files = gr.UploadButton("Upload images / .zip / .tar", file_count="multiple", file_types=UPLOAD_TYPES,
                                size="sm", variant="secondary", elem_id=named("upload-files"))
        folder = gr.UploadButton("Upload a folder", file_count="directory", size="sm", variant="secondary",
                                 elem_id=named("upload-folder"))
    report = gr.Markdown(elem_id=named("upload-report"))

    @reports_errors(outputs=2)
    def ingest(paths):
        source, ingested = context.lab().ingest([str(path) for path in paths or []])
        return gr.update(choices=choices(context.lab()), value=source), message_html(ingest_summary(source, ingested), "ok")

    for button in (files, folder):
        button.upload(ingest, button, [target, report], api_visibility="private", concurrency_id="uploads",
                      concurrency_limit=2)

    def refresh(key, current, request: gr.Request):
        register_visitor(key, request)
        return gr.update(choices=choices(context.lab()), value=current)

    context.demo.load(refresh, [context.visitor_key, target], target, api_visibility="private", queue=False)


def ingest_summary(source: str, ingested) -> str:
    skipped = f"; skipped {len(ingested.skipped)}: " + ", ".join(f"{name} ({reason})" for name, reason in
                                                                 ingested.skipped[:5]) if ingested.skipped else ""
    more = " …" if len(ingested.skipped) > 5 else ""
    return f"{source}: {ingested.images} image(s){skipped}{more}"


def upload_name(file: Any) -> str:
    return os.path.basename(str(file))


def browser_secret(root: Path) -> str:
    """A secret kept in the runs folder, so the run a browser remembers still decrypts after a server restart."""
    path = Path(root) / ".browser-state-secret"
    try:
        return path.read_text().strip()
    except OSError:
        value = secrets.token_hex(16)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
        return value


def device_description() -> str:
    """Where Keras computes in this process, e.g. ``CPU (2 cores)`` or ``GPU (NVIDIA H100)``."""
    import keras

    from sslcore.zerogpu import on_zerogpu

    if on_zerogpu():   # asking torch.cuda here would be wrong: the GPU exists only inside decorated calls
        return "ZeroGPU (a GPU lent per call, charged to the visitor's quota)"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"GPU ({len(gpus)} × {gpus[0].name.split(':', 1)[-1]})"
    elif keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"GPU ({device.device_kind})"
    elif keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({os.cpu_count()} cores)"
