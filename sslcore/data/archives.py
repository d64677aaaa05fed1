"""Image archives (.zip, .tar, .tar.gz) and uploaded files as a ``folder:`` dataset, unpacked safely.

On a public server archives come from strangers, so no entry is trusted: every name and entry
type is checked before the first byte is written (no absolute paths, no '..', no links, no device
files), the entry count and the uncompressed size are capped before writing and again while
writing (declared sizes can lie), and only image files are written at all -- a README or a nested
archive is listed as skipped, never unpacked. ``extractall`` is never used.

What comes out is an ordinary folder that the ``folder:`` layout rules (`sslcore.data.folders`)
then read unchanged: one subfolder per class is labelled, a flat folder is unlabelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from sslcore.data.cache import default_cache_dir
from sslcore.data.dataset import DataError
from sslcore.data.folders import IMAGE_EXTENSIONS

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")

_LIMIT_VARIABLES = {
    "max_files": "SSLCORE_MAX_UPLOAD_FILES",
    "max_bytes": "SSLCORE_MAX_UPLOAD_BYTES",
    "max_upload_bytes": "SSLCORE_MAX_UPLOAD_FILE_BYTES",
}
_CHUNK = 1 << 20
_PLAIN_ONLY = "archives may hold plain files and folders only"
_SHOWN = 10
# Errors the stdlib readers raise on damaged or mislabelled archives (DataError is a ValueError,
# so ValueError itself is deliberately not in this list).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, OSError, EOFError, zlib.error,
                NotImplementedError, RuntimeError)


@dataclass
class UploadLimits:
    """Caps on what one upload can make the server unpack: a few KB of zip can claim terabytes."""

    max_files: int = 50_000  # entries, files and folders alike
    max_bytes: int = 2 * 1024**3  # total uncompressed bytes
    max_upload_bytes: int = 1024**3  # one uploaded file (archive or image) as received

    @classmethod
    def from_env(cls) -> "UploadLimits":
        """Lets whoever runs the server size the caps to its disk without touching code."""
        values = {}
        for attribute, variable in _LIMIT_VARIABLES.items():
            raw = os.environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{variable} must be a whole number, got {raw!r}") from None
            if value < 1:
                raise ValueError(f"{variable} must be a positive number, got {value}")
            values[attribute] = value
        return cls(**values)


@dataclass
class Ingested:
    """What an upload turned into: the folder to hand to ``folder:``, and what was left out and why."""

    folder: str
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bytes_written: int = 0


def is_archive(path) -> bool:
    """By name only, so a damaged archive still reaches the archive reader and gets a clear error."""
    return os.fspath(path).lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: str, destination: str, *, limits: UploadLimits | None = None) -> Ingested:
    """Unpack the images of `archive` into `destination` (new or empty), refusing anything hostile.

    The whole archive is checked before anything is written, so a refused archive leaves nothing
    behind; a failure while writing removes what was written.
    """
    archive = os.fspath(archive)
    plan = _Plan(limits or UploadLimits.from_env())
    label = os.path.basename(archive)
    with contextlib.ExitStack() as stack:
        plan.add_archive(stack, archive, label, prefix=[], shown_as=None)
        plan.require_images(f"the archive {label}")
        return plan.write(destination)


def ingest_files(
    paths: list[str],
    destination: str,
    *,
    names: list[str] | None = None,
    limits: UploadLimits | None = None,
) -> Ingested:
    """One go of uploads (archives, images, or a whole directory's files) -> one folder of images.

    `names` are the uploads' original relative names (``photos/cat/1.png`` from a directory
    upload), so class subfolders survive; an archive's entries land beside its name. The limits
    apply to the whole set, and, as for one archive, everything is checked before anything is written.
    """
    paths = [os.fspath(path) for path in paths]
    if names is None:
        names = [os.path.basename(path) for path in paths]
    if len(names) != len(paths):
        raise ValueError(f"names must give one name per path: got {len(names)} names for {len(paths)} paths")
    plan = _Plan(limits or UploadLimits.from_env())
    with contextlib.ExitStack() as stack:
        for path, name in zip(paths, names):
            parts = _safe_parts("upload", name, "the upload folder")
            if not parts:
                _refuse("upload", name, "has no file name")
            if is_archive(name):
                plan.add_archive(stack, path, name, prefix=parts[:-1], shown_as=name)
            else:
                plan.add_file(path, name, parts)
        plan.require_images("the upload")
        return plan.write(destination)


def archive_folder(archive: str, *, cache_dir: str | None = None, limits: UploadLimits | None = None) -> str:
    """The folder to load for ``folder:photos.zip``: extracted once into the cache, reused after.

    The cache key is the archive's path, size and mtime, so an edited archive is extracted again
    (and the stale extraction of the same path removed). Extraction goes to a temporary folder that
    is renamed into place, so an interrupted or concurrent run never sees half an archive.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(archive)))
    if not os.path.isfile(path):
        raise DataError(f"Archive {path} does not exist. Check the path after 'folder:'.")
    info = os.stat(path)
    root = cache_dir or os.path.join(os.path.dirname(default_cache_dir()), "archives")
    path_hash = _digest(path)[:8]
    final = os.path.join(root, f"{path_hash}-{_digest(json.dumps([path, info.st_size, info.st_mtime_ns]))[:24]}")
    if os.path.isdir(final):
        return _unwrap(final)
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix=".tmp-")
    try:
        extract_archive(path, staging, limits=limits)
        try:
            os.rename(staging, final)
        except OSError:
            if not os.path.isdir(final):  # not a concurrent run that got there first
                raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    _prune_stale_extractions(root, path_hash, final)
    return _unwrap(final)


# -------------------------------------------------------------------------------------------- planning


@dataclass
class _Item:
    """One image to write: where it goes (relative parts, already checked) and how to read it."""

    shown_as: str
    parts: list[str]
    open: Callable[[], BinaryIO]


@dataclass
class _Entry:
    name: str
    parts: list[str]
    is_dir: bool
    size: int
    open: Callable[[], BinaryIO]
    encrypted: bool = False


class _Plan:
    """Everything that will be written, gathered and checked before the first byte goes to disk."""

    def __init__(self, limits: UploadLimits):
        self.limits = limits
        self.items: list[_Item] = []
        self.skipped: list[tuple[str, str]] = []
        self.entries = 0
        self.declared = 0
        self._files: set[tuple[str, ...]] = set()
        self._dirs: set[tuple[str, ...]] = set()

    def add_archive(self, stack: contextlib.ExitStack, path: str, label: str, *, prefix: list[str],
                    shown_as: str | None) -> None:
        self._check_upload_size(path, label)
        kind = "zip" if label.lower().endswith(".zip") else "tar"
        try:
            entries = self._zip_entries(stack, path, label) if kind == "zip" else self._tar_entries(stack, path, label)
            for entry in entries:
                self._count(label, entry.is_dir, entry.size)
                if not entry.is_dir:
                    shown = f"{shown_as}/{entry.name}" if shown_as else entry.name
                    reason = "encrypted, needs a password" if entry.encrypted else None
                    self._add(shown, prefix + entry.parts, entry.open, reason)
        except DataError:
            raise
        except _READ_ERRORS as error:
            raise DataError(f"{label} is not a readable {kind} archive ({_reason(error)}). "
                            f"Check the file: it may be damaged, or not a {kind} archive despite its name.") from error

    def add_file(self, path: str, name: str, parts: list[str]) -> None:
        self._check_upload_size(path, name)
        self._count(name, False, os.path.getsize(path))
        self._add(name, parts, lambda: open(path, "rb"), None)

    def require_images(self, what: str) -> None:
        if self.items:
            return
        extensions = " ".join(sorted(IMAGE_EXTENSIONS))
        message = f"No images in {what}; looked for {extensions} (hidden files and __MACOSX are ignored)."
        if self.skipped:
            message += " Skipped: " + _listing(self.skipped) + "."
        raise DataError(message)

    def write(self, destination: str) -> Ingested:
        written = _write_items(self.items, destination, self.limits)
        return Ingested(folder=_unwrap(os.fspath(destination)), images=len(self.items), skipped=list(self.skipped),
                        bytes_written=written)

    # ---- checks

    def _check_upload_size(self, path: str, label: str) -> None:
        try:
            size = os.path.getsize(path)
        except OSError as error:
            raise DataError(f"Cannot read the upload {label} ({_reason(error)}).") from error
        if size > self.limits.max_upload_bytes:
            raise DataError(f"{label} is {_size(size)}, more than the {_size(self.limits.max_upload_bytes)} "
                            f"allowed for one uploaded file (SSLCORE_MAX_UPLOAD_FILE_BYTES).")

    def _count(self, label: str, is_dir: bool, size: int) -> None:
        self.entries += 1
        self._check_entry_count(label, self.entries)
        if not is_dir:
            self.declared += max(size, 0)
            if self.declared > self.limits.max_bytes:
                raise DataError(f"{label}: refused: the files would unpack to more than {_size(self.limits.max_bytes)}, "
                                "the limit for one upload (SSLCORE_MAX_UPLOAD_BYTES). Nothing was extracted.")

    def _check_entry_count(self, label: str, count: int) -> None:
        if count > self.limits.max_files:
            raise DataError(f"{label}: refused: more than {self.limits.max_files:,} entries (files and folders), "
                            "the limit for one upload (SSLCORE_MAX_UPLOAD_FILES). Nothing was extracted.")

    def _add(self, shown: str, parts: list[str], opener, reason: str | None) -> None:
        reason = reason or _skip_reason(parts)
        if reason is None:
            parts = self._unique(parts)
            if parts is None:
                reason = "same path as a folder of another entry"
        if reason is not None:
            self.skipped.append((shown, reason))
            return
        self._files.add(tuple(parts))
        self._dirs.update(tuple(parts[:i]) for i in range(1, len(parts)))
        self.items.append(_Item(shown, parts, opener))

    def _unique(self, parts: list[str]) -> list[str] | None:
        """Rename a repeated path (zips allow duplicates; two uploads may both hold img001.png) rather
        than overwrite, and refuse a file where another entry needs a folder, or the reverse."""
        if any(tuple(parts[:i]) in self._files for i in range(1, len(parts))):
            return None
        stem, extension = os.path.splitext(parts[-1])
        candidate, number = parts, 1
        while tuple(candidate) in self._files or tuple(candidate) in self._dirs:
            number += 1
            candidate = parts[:-1] + [f"{stem}-{number}{extension}"]
        return candidate

    # ---- readers

    def _zip_entries(self, stack: contextlib.ExitStack, path: str, label: str) -> Iterator[_Entry]:
        self._check_entry_count(label, self.entries + _zip_entry_count(path))
        archive = stack.enter_context(zipfile.ZipFile(path))
        for info in archive.infolist():
            parts = _safe_parts(label, info.filename, "the archive")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                _refuse(label, info.filename, f"is a symbolic link; {_PLAIN_ONLY}")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                _refuse(label, info.filename, "is a special file (device, fifo or socket)")
            is_dir = info.is_dir() or stat.S_ISDIR(mode)
            if not parts and not is_dir:
                _refuse(label, info.filename, "has no file name")
            yield _Entry(info.filename, parts, is_dir, info.file_size,
                         lambda info=info: archive.open(info), encrypted=bool(info.flag_bits & 0x1))

    def _tar_entries(self, stack: contextlib.ExitStack, path: str, label: str) -> Iterator[_Entry]:
        archive = stack.enter_context(tarfile.open(path, "r:*"))
        for member in archive:  # one header at a time, so an oversized archive stops at the first limit
            parts = _safe_parts(label, member.name, "the archive")
            if member.issym():
                _refuse(label, member.name, f"is a symbolic link (to {member.linkname!r}); {_PLAIN_ONLY}")
            if member.islnk():
                _refuse(label, member.name, f"is a hard link (to {member.linkname!r}); {_PLAIN_ONLY}")
            if member.ischr() or member.isblk() or member.isfifo():
                _refuse(label, member.name, "is a device or fifo, not a plain file")
            if not (member.isreg() or member.isdir()):
                _refuse(label, member.name, f"is not a plain file or folder (tar type {member.type!r})")
            if not parts and not member.isdir():
                _refuse(label, member.name, "has no file name")
            yield _Entry(member.name, parts, member.isdir(), member.size, lambda member=member: archive.extractfile(member))


def _zip_entry_count(path: str) -> int:
    """The entry count from the zip's end record, read before ZipFile parses (and holds in memory)
    a central directory that may list millions of entries."""
    with open(path, "rb") as stream:
        end = zipfile._EndRecData(stream)
    if end is None:
        raise zipfile.BadZipFile("no zip end record; the file is not a zip or is cut short")
    return int(end[zipfile._ECD_ENTRIES_TOTAL])


def _safe_parts(label: str, name: str, inside: str) -> list[str]:
    """An entry name as path components that cannot leave the destination, or a refusal.

    Backslashes count as separators: archives made on Windows use them, and so do attacks.
    """
    if "\x00" in name:
        _refuse(label, name, "has a NUL character in its name")
    text = name.replace("\\", "/")
    if text.startswith("/"):
        _refuse(label, name, "is an absolute path")
    if re.match(r"[A-Za-z]:", text):
        _refuse(label, name, "starts with a drive letter")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        _refuse(label, name, f"points outside {inside}")
    return parts


def _refuse(label: str, name: str, why: str):
    raise DataError(f"{label}: refused: entry {name!r} {why}. Nothing was extracted.")


def _skip_reason(parts: list[str]) -> str | None:
    if "__MACOSX" in parts:
        return "macOS metadata (__MACOSX)"
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    if is_archive(parts[-1]):
        return "nested archive, not extracted"
    extension = os.path.splitext(parts[-1])[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        return f"not an image ({extension or 'no extension'})"
    return None


# -------------------------------------------------------------------------------------------- writing


def _write_items(items: list[_Item], destination: str, limits: UploadLimits) -> int:
    """Stream every item to disk, counting real bytes; on any failure remove what was written."""
    created_dirs: list[str] = []
    written_files: list[str] = []
    total = 0
    current = None
    try:
        base = _prepare_destination(destination, created_dirs)
        for item in items:
            current = item
            target = _target(base, item.parts, created_dirs)
            with item.open() as source, open(target, "xb") as sink:  # "x": never follow or overwrite
                written_files.append(target)
                while chunk := source.read(_CHUNK):
                    total += len(chunk)
                    if total > limits.max_bytes:
                        raise DataError(
                            f"refused: entry {item.shown_as!r} makes the upload unpack to more than "
                            f"{_size(limits.max_bytes)}, the limit for one upload (SSLCORE_MAX_UPLOAD_BYTES), "
                            "though its declared size was smaller. Nothing was kept.")
                    sink.write(chunk)
    except DataError:
        _remove(written_files, created_dirs)
        raise
    except _READ_ERRORS as error:
        _remove(written_files, created_dirs)
        where = f" entry {current.shown_as!r}" if current is not None else ""
        raise DataError(f"Cannot unpack{where} ({_reason(error)}). Nothing was kept.") from error
    except BaseException:
        _remove(written_files, created_dirs)
        raise
    return total


def _prepare_destination(destination: str, created_dirs: list[str]) -> str:
    if os.path.lexists(destination):
        if not os.path.isdir(destination) or os.listdir(destination):
            raise ValueError(f"destination {destination} must be a new or empty folder")
    else:
        os.makedirs(destination)
        created_dirs.append(destination)
    return os.path.realpath(destination)


def _target(base: str, parts: list[str], created_dirs: list[str]) -> str:
    """The file path for `parts`, its folders made, after checking it really resolves inside `base`
    (names were checked already; this also catches a link planted in the destination)."""
    directory = base
    for part in parts[:-1]:
        directory = os.path.join(directory, part)
        if not os.path.lexists(directory):
            os.mkdir(directory)
            created_dirs.append(directory)
    real = os.path.realpath(directory)
    if real != base and not real.startswith(base + os.sep):
        raise DataError(f"refused: {'/'.join(parts)} would be written outside the destination. Nothing was kept.")
    return os.path.join(directory, parts[-1])


def _remove(files: list[str], directories: list[str]) -> None:
    for path in files:
        with contextlib.suppress(OSError):
            os.remove(path)
    for path in reversed(directories):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _unwrap(folder: str) -> str:
    """Step into a single folder that wraps everything (photos.zip holding photos/cat, photos/dog),
    so the folder layout rules see the classes or loose images themselves."""
    while True:
        entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir(follow_symlinks=False):
            return folder
        folder = entries[0].path


def _prune_stale_extractions(root: str, path_hash: str, keep: str) -> None:
    """An edited archive gets a new extraction; the old one can never be used again and is as large."""
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if name.startswith(path_hash + "-") and path != keep:
                shutil.rmtree(path, ignore_errors=True)


# -------------------------------------------------------------------------------------------- helpers


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _listing(skipped: list[tuple[str, str]]) -> str:
    shown = [f"{name} ({reason})" for name, reason in skipped[:_SHOWN]]
    if len(skipped) > _SHOWN:
        shown.append(f"... and {len(skipped) - _SHOWN} more")
    return ", ".join(shown)
