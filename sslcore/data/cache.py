"""The on-disk cache of decoded folders, so the next run of the same folder starts in seconds.

A cache file is keyed by the cache format version, the folder, the image size, skip_bad_images and
every file's (path, size, mtime); any change gives a new key, and older caches of the same folder and size are pruned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile

import numpy as np

from sslcore.data.dataset import FolderImages

log = logging.getLogger(__name__)

# Bump whenever decoding changes what pixels a file turns into, so old caches stop matching.
CACHE_FORMAT_VERSION = 1


def default_cache_dir() -> str:
    """$SSLCORE_CACHE/folders if set (SSLCORE_CACHE is sslcore's cache root), else ~/.cache/sslcore/folders."""
    root = os.environ.get("SSLCORE_CACHE") or os.path.join("~", ".cache", "sslcore")
    return os.path.join(os.path.expanduser(root), "folders")


def _folder_fingerprint(root: str, files: list[str]) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) per file: any edit, addition or removal changes it."""
    fingerprint = []
    for relative in files:
        stat = os.stat(os.path.join(root, relative))
        fingerprint.append((relative, stat.st_size, stat.st_mtime_ns))
    return fingerprint


def _cache_file(root: str, image_size: int, skip_bad_images: bool, fingerprint, cache_dir: str | None) -> str:
    key = json.dumps([CACHE_FORMAT_VERSION, root, image_size, skip_bad_images, fingerprint])
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(cache_dir or default_cache_dir(), f"{_cache_prefix(root, image_size)}{digest}.npz")


def _cache_prefix(root: str, image_size: int) -> str:
    """Names a folder's caches at one size, readable by a person; stale ones share it and get pruned."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(root) or "root")[:40]
    folder_hash = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{readable}-{folder_hash}-{image_size}px-"


def _read_cache(cache_file: str, image_size: int) -> FolderImages | None:
    """The cached folder, or None when absent, unreadable or not the expected shape (then rebuilt)."""
    if not os.path.exists(cache_file):
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            folder = _folder_from_arrays(data)
    except Exception as error:  # a corrupt npz can raise nearly anything; the cure is always to rebuild
        log.warning("Ignoring unreadable cache file %s (%s); decoding again.", cache_file, error)
        return None
    if folder.images.shape[1:] != (image_size, image_size, 3) or len(folder.paths) != len(folder.images):
        log.warning("Ignoring cache file %s: its contents do not match; decoding again.", cache_file)
        return None
    mark_used(cache_file)
    return folder


def _folder_from_arrays(data) -> FolderImages:
    return FolderImages(
        images=np.ascontiguousarray(data["images"], dtype=np.uint8),
        labels=data["labels"].astype(np.int32) if bool(data["has_labels"]) else None,
        class_names=[str(name) for name in data["class_names"]],
        paths=[str(path) for path in data["paths"]],
        skipped=[(str(path), str(reason)) for path, reason in data["skipped"]],
    )


def _write_cache(cache_file: str, folder: FolderImages) -> None:
    write_cache_file(cache_file, _arrays_from_folder(folder))


def write_cache_file(cache_file: str, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file + rename), so a crash or a parallel run never leaves half a cache; then drop
    what can never match again and keep the cache folder within its limit.

    A cache that cannot be written only costs speed next time, so failures are logged, not raised.
    """
    directory = os.path.dirname(cache_file)
    temporary = None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, cache_file)
        temporary = None
        _prune_stale_caches(cache_file)
        keep_within_limit(directory, cache_file)
    except OSError as error:
        log.warning("Could not write the image cache %s (%s); the next run will decode again.", cache_file, error)
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)


def _arrays_from_folder(folder: FolderImages) -> dict[str, np.ndarray]:
    return {
        "images": folder.images,
        "labels": folder.labels if folder.labels is not None else np.zeros(0, np.int32),
        "has_labels": np.array(folder.labels is not None),
        "class_names": np.array(folder.class_names, dtype=str),
        "paths": np.array(folder.paths, dtype=str),
        "skipped": np.array(folder.skipped, dtype=str).reshape(-1, 2),
    }


CACHE_LIMIT_ENV = "SSLCORE_CACHE_MB"
PUBLIC_CACHE_LIMIT_MB = 8192   # per cache folder (folders/, hf/) on a public server


def cache_limit_bytes() -> int | None:
    """How much one cache folder may hold: ``SSLCORE_CACHE_MB``, else 8 GiB on a public server (where strangers pick
    the data and the image size, and each pair is a file as large as the decoded set), else no limit."""
    from sslcore import credentials

    return credentials.size_limit_bytes(CACHE_LIMIT_ENV, PUBLIC_CACHE_LIMIT_MB)


def keep_within_limit(directory: str, keep: str) -> None:
    """Remove the least recently used caches in ``directory`` (never ``keep``, just written) until it fits."""
    limit = cache_limit_bytes()
    if limit is None:
        return
    try:
        entries = []   # (last used, bytes, path), oldest first
        for entry in os.scandir(directory):
            if entry.name.endswith(".npz") and not entry.name.startswith(".tmp-"):
                stat = entry.stat()
                entries.append((stat.st_mtime, stat.st_size, entry.path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= limit:
                break
            if os.path.abspath(path) != os.path.abspath(keep):
                os.remove(path)
                total -= size
    except OSError:
        pass  # another process may be pruning too; the next write tries again


def mark_used(cache_file: str) -> None:
    """A cache read now is the last to be removed (``keep_within_limit`` goes by modification time)."""
    try:
        os.utime(cache_file)
    except OSError:
        pass


def _prune_stale_caches(cache_file: str) -> None:
    """Remove older caches of the same folder and size: they can never match again, and each is as
    large as the decoded dataset."""
    directory, current = os.path.split(cache_file)
    prefix = current.rsplit("-", 1)[0] + "-"  # everything before the content digest
    try:
        stale = [name for name in os.listdir(directory) if name.startswith(prefix) and name != current]
        for name in stale:
            os.remove(os.path.join(directory, name))
    except OSError:
        pass  # another run may be pruning too; a leftover file is harmless
