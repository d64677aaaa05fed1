"""What every page shares: the app's context, run pickers, the data-source picker, and how errors are shown.

Pages lay out components and call sslcore; this module keeps the few UI helpers they would otherwise copy.
"""
from __future__ import annotations

import functools
import html
import os
import secrets
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from sslcore.data import DataError, describe_sources
from sslcore.jobs import JobManager

# Errors a user can fix (bad settings, a file that is not an image, a run that has not finished): shown as
# they are. Anything else is a bug or the machine (out of memory); it is shown too, and the app keeps serving.
USER_ERRORS = (ValueError, DataError, FileNotFoundError)
FOLDER_CHOICE = "folder (path below)"


@dataclass
class AppContext:
    jobs: JobManager
    demo: gr.Blocks

    def run_path(self, run_id: str | None) -> Path:
        if not run_id:
            raise ValueError("Pick a run first (the run list shows the finished ones)")
        return self.jobs.existing_run(run_id).path

    def model_source(self, choice: str | None) -> str | Path:
        """A run picked from the list, or a Hub model typed into it (``USER/NAME`` or ``hf://USER/NAME``)."""
        from sslcore.hub import is_hub_model

        choice = (choice or "").strip()
        if choice and is_hub_model(choice) and not (self.jobs.root / choice).exists():
            return choice
        return self.run_path(choice)


# ---------------------------------------------------------------------------------------------- messages


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
            gr.Warning(message)
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
        choices.append((f"{row['run_id']} · {row['encoder']} · {row['state']}{figures}", row["run_id"]))
    return choices


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


def data_source_picker() -> tuple[gr.Dropdown, gr.Textbox]:
    """The loadable sources (digits, prepared TFDS sets) plus a folder of your own images."""
    sources = describe_sources() + [FOLDER_CHOICE]
    dropdown = gr.Dropdown(sources, value="digits", label="Dataset",
                           info="digits ships with scikit-learn; a folder holds one subfolder per class, or just images")
    folder = gr.Textbox("", label="Folder path", placeholder="/path/to/images", visible=False)
    dropdown.change(lambda choice: gr.update(visible=choice == FOLDER_CHOICE), dropdown, folder,
                    api_name="show_folder_box", api_visibility="private", queue=False)
    return dropdown, folder


def data_source(choice: str | None, folder: str | None) -> str:
    """The sslcore source string for a picker's values."""
    if choice == FOLDER_CHOICE or (folder and folder.strip() and choice in (None, "")):
        path = (folder or "").strip()
        if not path:
            raise ValueError("Type the path of your image folder in 'Folder path'")
        return path if path.startswith("folder:") else f"folder:{path}"
    return choice or "digits"


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
