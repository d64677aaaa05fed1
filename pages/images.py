"""Images the pages return, as PNG files written once, and a small cache of results many visitors ask for alike.

Gradio saves a numpy output to ``<cache>/<hash of the bytes>/image.png`` and rewrites that file on every call: two
visitors asked for the same picture while the first was still downloading it, and the download broke ("Too little
data for declared Content-Length"). ``png_file`` writes each distinct picture once, under a temporary name renamed
into place, at a path named by its content; a path it has handed out is never written again, so a response that is
streaming it always reads the whole of one file. The folder lies inside Gradio's own cache, so Gradio serves the file
where it is instead of copying it.

``ResultCache`` keeps the last few results of a function keyed by its inputs (the default preview that every new
visitor's page asks for): computed once per server, and callers that ask while it is being computed wait for it
instead of computing it again.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np
from gradio.utils import get_upload_folder
from PIL import Image

IMAGE_ROOT = Path(get_upload_folder()) / "sslcore-images"
UNUSED_SECONDS = 24 * 3600.0      # a picture nobody was handed for this long is deleted (by the next prune)
PRUNE_EVERY_SECONDS = 600.0
TOUCH_AFTER_SECONDS = 3600.0      # a picture handed out again gets a new time when its last one is this old
# zlib level 1: a 500x400 preview grid encodes in ~5 ms instead of level 6's ~15 ms, for ~20 % more bytes
# (measured); on a Space the encoder's CPU is what the crowd competes for, the bytes travel fast enough.
PNG_COMPRESS_LEVEL = 1
_last_prune = time.monotonic()
_prune_lock = threading.Lock()


def png_file(image: np.ndarray) -> str:
    """The path of a PNG of ``image`` (uint8, H×W, H×W×3 or H×W×4), written once and never rewritten."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    digest = hashlib.sha256(f"{array.shape}".encode() + array.tobytes()).hexdigest()
    folder = IMAGE_ROOT / digest[:2]
    path = folder / f"{digest}.png"
    if path.exists():
        _touch(path)
        return str(path)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(buffer.getvalue())
        os.replace(staging, path)   # atomic; a racing writer of the same picture replaces it with the same bytes
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    _maybe_prune()
    return str(path)


def gallery(items: list[tuple[np.ndarray, str]]) -> list[tuple[str, str]]:
    """(picture, caption) pairs as a gr.Gallery value of PNG files."""
    return [(png_file(picture), caption) for picture, caption in items]


def _touch(path: Path) -> None:
    """Mark a picture as still in use, so the prune keeps it: its time only (never its bytes), at most hourly."""
    try:
        if time.time() - path.stat().st_mtime > TOUCH_AFTER_SECONDS:
            os.utime(path)
    except OSError:
        pass


def _maybe_prune(now: float | None = None) -> None:
    global _last_prune
    now = time.monotonic() if now is None else now
    with _prune_lock:
        if now - _last_prune < PRUNE_EVERY_SECONDS:
            return
        _last_prune = now
    prune()


def prune(unused_seconds: float = UNUSED_SECONDS) -> int:
    """Delete pictures not handed out for ``unused_seconds`` (a public Space serves new pictures all day)."""
    removed, cutoff = 0, time.time() - unused_seconds
    for path in IMAGE_ROOT.glob("*/*.png"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def files_exist(value: Any) -> bool:
    """Whether every picture in a cached result is still on disk (a prune, or Gradio's own clean-up, may remove it)."""
    if isinstance(value, str) and value.startswith(str(IMAGE_ROOT)):
        if not os.path.exists(value):
            return False
        _touch(Path(value))
        return True
    if isinstance(value, (tuple, list)):
        return all(files_exist(item) for item in value)
    return True


class ResultCache:
    """The last ``size`` results by key, each computed once even when many callers ask for it at the same moment."""

    def __init__(self, size: int = 32, valid: Callable[[Any], bool] = files_exist):
        self.size, self.valid = size, valid
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        while True:
            with self._lock:
                if key in self._values and self.valid(self._values[key]):
                    self._values.move_to_end(key)
                    self.hits += 1
                    return self._values[key]
                self._values.pop(key, None)
                waiting = self._pending.get(key)
                if waiting is None:
                    done = self._pending[key] = threading.Event()
                    self.misses += 1
                    break
            waiting.wait()   # another caller is computing it; if that failed, the loop computes it here
        try:
            value = compute()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.size:
                    self._values.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._pending.pop(key, None)
            done.set()
