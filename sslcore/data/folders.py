"""The ``folder:PATH`` source: scan a folder, check its layout, decode its images in threads.

One subfolder per class gives a labelled dataset; a flat folder of images is an unlabelled pool.
Decoded folders are kept in an on-disk cache (`sslcore.data.cache`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sslcore.data.cache import _cache_file, _folder_fingerprint, _read_cache, _write_cache
from sslcore.data.dataset import (DataError, Dataset, FolderImages, _check_image_size, _labelled_dataset,
                                  check_decoded_size)
from sslcore.data.decode import decode_image

log = logging.getLogger(__name__)

# A fixed list rather than "whatever Pillow registers": folders often carry READMEs, CSVs or EPS
# figures that Pillow claims but cannot decode without extra tools, and those should be ignored,
# not reported as broken images.
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .pnm".split()
)


def load_folder(path, image_size: int, *, skip_bad_images: bool = False, cache_dir: str | None = None) -> FolderImages:
    """Decode every image under `path` (class-per-subfolder, or flat = unlabelled), using the cache.

    Without `skip_bad_images` any unreadable file raises a DataError listing all of them; with it,
    they are left out and reported in `.skipped` as (relative path, reason).
    """
    _check_image_size(image_size)
    root = os.path.abspath(os.path.expanduser(os.fspath(path)))
    files, labels, class_names = _scan_folder(root)
    fingerprint = _folder_fingerprint(root, files)
    cache_file = _cache_file(root, image_size, skip_bad_images, fingerprint, cache_dir)
    cached = _read_cache(cache_file, image_size)
    if cached is not None:
        log.info("Loaded %d decoded images of %s from cache %s", len(cached.paths), root, cache_file)
        return cached
    folder = _decode_folder(root, files, labels, class_names, image_size, skip_bad_images)
    _write_cache(cache_file, folder)
    return folder


def _dataset_from_folder(source: str, folder: FolderImages, *, test_fraction: float, seed: int) -> Dataset:
    if folder.labels is None:
        return Dataset(
            name=source, train_images=folder.images, train_labels=None, test_images=None, test_labels=None,
            class_names=[], skipped=list(folder.skipped), train_paths=list(folder.paths),
        )
    return _labelled_dataset(
        source, folder.images, folder.labels, folder.class_names,
        test_fraction=test_fraction, seed=seed, paths=folder.paths, skipped=folder.skipped,
    )


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_image_file(name: str) -> bool:
    return not _is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_folder(root: str) -> tuple[list[str], list[int] | None, list[str]]:
    """(relative image paths, class index per path or None, class names) for a folder's layout."""
    if not os.path.exists(root):
        raise DataError(f"Folder {root} does not exist. Check the path after 'folder:'.")
    if not os.path.isdir(root):
        raise DataError(f"{root} is a file, not a folder. Point 'folder:' at the folder that holds your images, "
                        "or at a .zip, .tar, .tar.gz or .tgz archive of it.")
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError as error:
        raise DataError(f"Cannot list folder {root} ({error}). Check its permissions.") from error
    loose = [entry.name for entry in entries if entry.is_file() and _is_image_file(entry.name)]
    class_dirs = [entry.name for entry in entries if entry.is_dir() and not _is_hidden(entry.name)]
    class_files = {name: files for name in class_dirs if (files := _images_under(root, name))}
    _check_layout(root, loose, class_files)
    if loose:
        return loose, None, []
    class_names = sorted(class_files)
    files = [file for name in class_names for file in class_files[name]]
    labels = [index for index, name in enumerate(class_names) for _ in class_files[name]]
    return files, labels, class_names


def _images_under(root: str, class_name: str) -> list[str]:
    """Relative paths of the images anywhere below root/class_name, hidden folders skipped."""
    found = []
    for directory, subdirs, names in os.walk(os.path.join(root, class_name)):
        subdirs[:] = sorted(d for d in subdirs if not _is_hidden(d))
        relative = os.path.relpath(directory, root)
        found += [os.path.join(relative, name).replace(os.sep, "/") for name in sorted(names) if _is_image_file(name)]
    return found


def _check_layout(root: str, loose: list[str], class_files: dict[str, list[str]]) -> None:
    extensions = " ".join(sorted(IMAGE_EXTENSIONS))
    if loose and class_files:
        raise DataError(
            f"Folder {root} mixes loose images (e.g. {loose[0]}) with class subfolders "
            f"(e.g. {next(iter(class_files))}/), so it is unclear whether it is labelled. For a labelled "
            "dataset move every image into its class subfolder; for an unlabelled one move the "
            "subfolders' images up into the folder itself."
        )
    if not loose and not class_files:
        raise DataError(
            f"Folder {root} contains no images (looked for {extensions}; hidden files are ignored). "
            "Put images in it, or one subfolder of images per class."
        )
    if len(class_files) == 1:
        only = next(iter(class_files))
        raise DataError(
            f"Folder {root} has only one class subfolder ({only}/). A class-per-subfolder dataset needs "
            f"at least 2 classes. To pretrain on these images without labels, point 'folder:' at "
            f"{os.path.join(root, only)} instead: a flat folder of images is treated as unlabelled."
        )


def _decode_folder(
    root: str,
    files: list[str],
    labels: list[int] | None,
    class_names: list[str],
    image_size: int,
    skip_bad_images: bool,
) -> FolderImages:
    check_decoded_size(len(files), image_size, f"Folder {os.path.basename(root.rstrip(os.sep)) or root}")
    log.info("Decoding %d images from %s at %dx%d", len(files), root, image_size, image_size)
    images = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    failures = _decode_files_into(images, root, files, image_size)
    bad = [(files[index], reason) for index, reason in enumerate(failures) if reason is not None]
    if bad and not skip_bad_images:
        raise DataError(_bad_files_message(root, bad))
    if len(bad) == len(files):
        raise DataError(f"None of the {len(files)} images in {root} could be decoded ({_first(bad)}). Check the files.")
    keep = np.array([reason is None for reason in failures], dtype=bool)
    if bad:
        log.warning("Skipped %d unreadable images in %s", len(bad), root)
        images = images[keep]
    return FolderImages(
        images=np.ascontiguousarray(images),
        labels=np.asarray(labels, dtype=np.int32)[keep] if labels is not None else None,
        class_names=list(class_names),
        paths=[file for file, kept in zip(files, keep) if kept],
        skipped=bad,
    )


def _decode_files_into(images: np.ndarray, root: str, files: list[str], image_size: int) -> list[str | None]:
    """Decode files in threads straight into `images`; the failure reason per file, or None.

    Threads pay off on large photos because Pillow releases the GIL while decoding and resizing.
    Files go to the threads in chunks: for thumbnails like CIFAR's, a future per file costs about
    as much as the decode itself.
    """

    def decode_range(start: int) -> list[str | None]:
        return [_decode_into(images, index, os.path.join(root, files[index]), image_size)
                for index in range(start, min(start + chunk, len(files)))]

    workers = min(32, os.cpu_count() or 1)
    chunk = max(1, min(64, len(files) // (4 * workers)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sslcore-decode") as pool:
        return [reason for part in pool.map(decode_range, range(0, len(files), chunk)) for reason in part]


def _decode_into(images: np.ndarray, index: int, path: str, image_size: int) -> str | None:
    try:
        images[index] = decode_image(path, image_size)
    except DataError as error:
        return getattr(error, "reason", str(error))
    return None


def _bad_files_message(root: str, bad: list[tuple[str, str]], shown: int = 10) -> str:
    lines = [f"  {os.path.join(root, path)}: {reason}" for path, reason in bad[:shown]]
    if len(bad) > shown:
        lines.append(f"  ... and {len(bad) - shown} more")
    return (
        f"{len(bad)} file(s) in {root} could not be decoded as images:\n" + "\n".join(lines) + "\n"
        "Fix or remove them, or leave them out with --skip-bad-images (skip_bad_images=True in Python; "
        "they are then listed in Dataset.skipped)."
    )


def _first(bad: list[tuple[str, str]]) -> str:
    path, reason = bad[0]
    return f"e.g. {path}: {reason}"
