"""A run folder: everything a run is, on disk, so a reload, a second tab or a restarted server sees it.

    config.json       everything needed to rebuild the run
    metrics.jsonl     one JSON object per epoch
    steps.jsonl       one JSON object per training step (what the live charts draw)
    status.json       state (running / finished / stopped / paused / failed), progress, last message
    encoder.keras     feature extractor: RGB pixels 0–255 → features
    classifier.keras  encoder + linear probe → class probabilities (labelled data only)
    checkpoints/      ckpt-<global step>.npz: every variable of model and optimizer, plus trainer state
    stop_requested    present while someone asks the running job to stop after its current step
    summary.json      the figures of the exported models: state "finished", or "stopped" with the step they
                      were exported at (a stopped run's encoder.keras and classifier.keras are its last checkpoint's)
"""
from __future__ import annotations

import bisect
import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

# paused: a chunked run (sslcore.chunks) whose host refused or cut a GPU call; it resumes like a stopped one.
STATES = ("pending", "running", "finished", "stopped", "paused", "failed")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write to a temporary file and rename, so a reader (or a killed process) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2, default=_json_default)
        temporary = handle.name
    os.replace(temporary, path)


def process_started_at() -> float:
    """When this process started (epoch seconds): from /proc on Linux, else when this module was imported."""
    try:
        with open("/proc/self/stat") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])   # field 22, after the command name
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _JsonlRows:
    """Rows of JSON-lines files, parsed once: a later read parses only the lines appended since.

    The app reads a training run's steps.jsonl on every status poll, from many visitors at once, while the run
    appends to it; re-parsing thousands of rows per poll was most of a busy server's work. A file that shrank or was
    replaced is parsed again from the start. Bounded: the files read least recently are forgotten first.
    """

    def __init__(self, max_files: int = 64):
        self.max_files = max_files
        self._files: OrderedDict[Path, tuple[int, int, list[dict]]] = OrderedDict()   # path: (inode, offset, rows)
        self._lock = threading.Lock()

    def read(self, path: Path, after_step: int | None = None) -> list[dict]:
        """Copies of the rows (a caller's edits never reach the cache); with ``after_step``, only the rows whose
        "step" is above it (rows are in step order), so a poller that has most rows copies only the new ones."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            with self._lock:
                self._files.pop(path, None)   # removed (a run started over): a file made here later is new
            return []
        with handle, self._lock:
            stat = os.fstat(handle.fileno())
            inode, size = stat.st_ino, stat.st_size
            known_inode, offset, rows = self._files.pop(path, (None, 0, []))
            if known_inode != inode or size < offset or not _ends_a_line(handle, offset):
                offset, rows = 0, []
            handle.seek(offset)
            offset, rows = _parse_from(handle.read(), offset, rows)
            self._files[path] = (inode, offset, rows)
            while len(self._files) > self.max_files:
                self._files.popitem(last=False)
            start = 0 if after_step is None else bisect.bisect_right(rows, after_step, key=lambda row: row.get("step", 0))
            return [dict(row) for row in rows[start:]]


def _ends_a_line(handle, offset: int) -> bool:
    """True when the byte before ``offset`` ends a line, as it does where the last read stopped."""
    if offset == 0:
        return True
    handle.seek(offset - 1)
    return handle.read(1) == b"\n"


def _parse_from(data: bytes, offset: int, rows: list[dict]) -> tuple[int, list[dict]]:
    """Parse the whole lines of ``data`` (read at ``offset``) onto ``rows``; the new offset follows the last line
    parsed. A line cut short (no newline yet, or not JSON: a killed process) ends the parse, so every row
    before it is intact and nothing after it is read until the file is rewritten."""
    position = 0   # appends to ``rows`` in place: the cache entry is taken out while it is extended
    while (end := data.find(b"\n", position)) != -1:
        line = data[position:end].strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        position = end + 1
    return offset + position, rows


_ROWS = _JsonlRows()


def _read_jsonl(path: Path, after_step: int | None = None) -> list[dict]:
    return _ROWS.read(Path(path), after_step)


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- files --------------------------------------------------------------------------------------
    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    steps_path = property(lambda self: self.path / "steps.jsonl")
    status_path = property(lambda self: self.path / "status.json")
    summary_path = property(lambda self: self.path / "summary.json")
    encoder_path = property(lambda self: self.path / "encoder.keras")
    classifier_path = property(lambda self: self.path / "classifier.keras")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    stop_path = property(lambda self: self.path / "stop_requested")
    owner_path = property(lambda self: self.path / "owner")   # the visitor who started it on a public Space

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, config)

    def owner(self) -> str | None:
        try:
            return self.owner_path.read_text().strip() or None
        except OSError:
            return None

    def config(self) -> dict:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run folder (no config.json)")
        return json.loads(self.config_path.read_text())

    # -- metrics ------------------------------------------------------------------------------------
    def append_rows(self, kind: str, rows: Iterable[dict]) -> None:
        path = self.metrics_path if kind == "epochs" else self.steps_path
        with open(path, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=_json_default) + "\n")

    def epochs(self) -> list[dict]:
        return _read_jsonl(self.metrics_path)

    def steps(self, after_step: int | None = None) -> list[dict]:
        """Every per-step row, or those after ``after_step``."""
        return _read_jsonl(self.steps_path, after_step)

    def truncate_rows(self, epoch_rows: int, step_rows: int) -> None:
        """Drop rows written after the checkpoint a run resumes from, so none is counted twice."""
        for path, keep in ((self.metrics_path, epoch_rows), (self.steps_path, step_rows)):
            rows = _read_jsonl(path)[:keep]
            # A new file renamed over the old (a new inode): readers that cached the old rows parse it afresh,
            # and a process killed mid-write leaves the old file whole.
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
                handle.write("".join(json.dumps(row, default=_json_default) + "\n" for row in rows))
            os.replace(handle.name, path)

    # -- cooperative stop: any process (the app, a second tab, a shell) may ask a running job to stop ----
    def request_stop(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.stop_path.touch()

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)

    def clear_stale_stop(self, older_than: float) -> None:
        """Drop a stop request made before ``older_than`` (a process that died before honouring it), and keep
        one made since: a Stop pressed while the trainer was still starting up must not be lost."""
        try:
            if self.stop_path.stat().st_mtime < older_than:
                self.clear_stop()
        except FileNotFoundError:
            pass

    def is_set(self) -> bool:
        """A run folder is itself a stop signal for the trainer (``Trainer.fit(stop=...)``)."""
        return self.stop_path.exists()

    # -- status -------------------------------------------------------------------------------------
    def write_status(self, state: str, message: str = "", *, pid: int | None | bool = True, **progress) -> None:
        """``pid``: True records this process (the trainer's own status); None when another process (the
        app's job manager) writes on the run's behalf."""
        assert state in STATES, state
        write_json_atomic(self.status_path, {"state": state, "message": message, "updated": time.time(),
                                             "pid": os.getpid() if pid is True else pid, **progress})

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "pending", "message": ""}

    def summary(self) -> dict | None:
        try:
            return json.loads(self.summary_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def stopped_at(self) -> dict | None:
        """Where the exported models stopped, when they are a stopped run's ({"step", "total_steps", "epoch",
        "epochs"}); None for a finished run's models, or when there are none.

        From summary.json, not status.json: the status moves on when the run is resumed (or killed), while the
        models stay those of the stop until the resumed run replaces them."""
        summary = self.summary()
        if not summary or summary.get("state") != "stopped" or not self.encoder_path.exists():
            return None
        return {"step": summary.get("global_step"), "total_steps": summary.get("total_steps"),
                "epoch": summary.get("epochs_completed"), "epochs": summary.get("epochs")}

    def stopped_text(self) -> str | None:
        """"stopped at step 40 of 100" for a stopped run's models (None otherwise): what the run list, Explore and
        the model card say about them."""
        stopped = self.stopped_at()
        return describe_stop(stopped) if stopped else None

    # -- checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(self, global_step: int, model_values: list[np.ndarray], optimizer_values: list[np.ndarray],
                        state: dict, keep: int = 3) -> Path:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"model_{i:05d}": value for i, value in enumerate(model_values)}
        arrays.update({f"optimizer_{i:05d}": value for i, value in enumerate(optimizer_values)})
        arrays["state_json"] = np.frombuffer(json.dumps(state, default=_json_default).encode(), dtype=np.uint8)
        final = self.checkpoint_dir / f"ckpt-{global_step:08d}.npz"
        with tempfile.NamedTemporaryFile(dir=self.checkpoint_dir, suffix=".tmp", delete=False) as handle:
            np.savez(handle, **arrays)
            temporary = handle.name
        os.replace(temporary, final)
        if keep > 0:
            for old in self.checkpoints()[:-keep]:
                old.unlink(missing_ok=True)
        return final

    def checkpoints(self) -> list[Path]:
        return sorted(self.checkpoint_dir.glob("ckpt-*.npz")) if self.checkpoint_dir.exists() else []

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    @staticmethod
    def load_checkpoint(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
        with np.load(path) as archive:
            model_values = [archive[k] for k in sorted(k for k in archive.files if k.startswith("model_"))]
            optimizer_values = [archive[k] for k in sorted(k for k in archive.files if k.startswith("optimizer_"))]
            state = json.loads(archive["state_json"].tobytes().decode())
        return model_values, optimizer_values, state


def describe_stop(stopped: dict) -> str:
    total = stopped.get("total_steps")
    return f"stopped at step {stopped['step']}" + (f" of {total}" if total else "")


def list_runs(root: str | os.PathLike) -> list[RunDir]:
    """Run folders under ``root``, newest first."""
    root = Path(root)
    if not root.exists():
        return []
    runs = [RunDir(p) for p in root.iterdir() if (p / "config.json").exists()]
    return sorted(runs, key=lambda run: run.config_path.stat().st_mtime, reverse=True)
