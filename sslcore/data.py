"""Source string -> `Dataset`: the images every other part of sslcore trains and evaluates on.

A source is one of

* ``digits`` -- scikit-learn's 1,797 handwritten 8x8 digits. It ships with scikit-learn, so it is
  the one dataset every machine has, with or without internet.
* ``folder:PATH`` -- your own images. One subfolder per class gives a labelled dataset (a
  stratified part is held out for kNN / linear-probe evaluation); a flat folder of images is an
  unlabelled pretraining pool.
* ``tfds:NAME`` -- a prepared TensorFlow Datasets image-classification dataset, e.g. ``tfds:cifar10``
  or ``tfds:stl10`` (STL-10's 100,000 unlabelled images are the pretraining pool and its labelled
  'train' split feeds the probe, as in the keras.io semi-supervised SimCLR example).

Everything ends up as one resident uint8 array of shape (N, S, S, 3): the trainer indexes batches
out of it on the accelerator and augments there, so decoding happens once, here, and a decoded
folder is cached on disk so the next run starts in seconds.

This module deliberately does not import Keras (it must stay backend-free and quick to import);
TensorFlow Datasets is imported only when a ``tfds:`` source is loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Bump whenever decoding changes what pixels a file turns into, so old caches stop matching.
CACHE_FORMAT_VERSION = 1

# A fixed list rather than "whatever Pillow registers": folders often carry READMEs, CSVs or EPS
# figures that Pillow claims but cannot decode without extra tools, and those should be ignored,
# not reported as broken images.
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .gif .webp .tif .tiff .ppm .pgm .pbm .pnm".split()
)

SOURCE_FORMS = "'digits', 'folder:PATH' or 'tfds:NAME' (e.g. 'tfds:cifar10', 'tfds:stl10')"

# Only these are offered by describe_sources(): the datasets sslcore's recipes are tuned for.
OFFERED_TFDS_DATASETS = ("cifar10", "stl10")

# Alpha is composited onto white rather than dropped: pixels under full transparency often hold
# black or leftover colour that was never meant to be seen, and white is how the image looks
# on a page.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA", "P"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_TFDS_BATCH = 1024


class DataError(ValueError):
    """Bad or missing data; the message names the file/folder and says what to do."""


@dataclass(repr=False, eq=False)
class Dataset:
    """Everything a run needs from its data, as resident uint8 arrays.

    ``train_*`` is the pretraining pool (labels may be absent); ``test_*`` is the held-out labelled
    split that kNN and linear-probe accuracy are reported on; ``probe_*`` is a separate labelled
    pool for sources whose pretraining pool is unlabelled (STL-10).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray | None
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    class_names: list[str]
    probe_images: np.ndarray | None = None
    probe_labels: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    train_paths: list[str] | None = None
    test_paths: list[str] | None = None

    @property
    def labelled_images(self) -> np.ndarray | None:
        """The labelled pool: the kNN memory bank and the online probe's training data."""
        if self.probe_images is not None:
            return self.probe_images
        return self.train_images if self.train_labels is not None else None

    @property
    def labelled_labels(self) -> np.ndarray | None:
        if self.probe_labels is not None:
            return self.probe_labels
        return self.train_labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    def __repr__(self) -> str:
        # The default dataclass repr would print the pixel arrays.
        parts = [f"train={_count(self.train_images)} {'labelled' if self.train_labels is not None else 'unlabelled'}"]
        if self.probe_images is not None:
            parts.append(f"probe={_count(self.probe_images)}")
        if self.test_images is not None:
            parts.append(f"test={_count(self.test_images)}")
        parts += [f"image_size={self.image_size}", f"classes={self.num_classes}"]
        if self.skipped:
            parts.append(f"skipped={len(self.skipped)}")
        return f"Dataset({self.name!r}, {', '.join(parts)})"


@dataclass(repr=False, eq=False)
class FolderImages:
    """A decoded image folder, before any train/test split."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __repr__(self) -> str:
        kind = f"{len(self.class_names)} classes" if self.labels is not None else "unlabelled"
        return f"FolderImages({_count(self.images)} images, {kind}, skipped={len(self.skipped)})"


def _count(images: np.ndarray) -> int:
    return int(images.shape[0])


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load(
    source: str,
    image_size: int,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_images: bool = False,
    cache_dir: str | None = None,
    tfds_data_dir: str | None = None,
    download: bool = False,
) -> Dataset:
    """Load `source` as square RGB uint8 images of side `image_size`.

    `test_fraction` and `seed` decide the stratified hold-out of labelled sources that come without
    a test split of their own (digits, class-per-subfolder folders).
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a string such as {SOURCE_FORMS}, got {type(source).__name__}")
    _check_image_size(image_size)
    _check_test_fraction(test_fraction)
    kind, _, argument = source.partition(":")
    if source == "digits":
        return _load_digits(image_size, test_fraction=test_fraction, seed=seed)
    if kind == "folder" and argument:
        folder = load_folder(argument, image_size, skip_bad_images=skip_bad_images, cache_dir=cache_dir)
        return _dataset_from_folder(source, folder, test_fraction=test_fraction, seed=seed)
    if kind == "tfds" and argument:
        return _load_tfds(
            source, argument, image_size,
            test_fraction=test_fraction, seed=seed, data_dir=tfds_data_dir, download=download,
        )
    raise DataError(_unknown_source_message(source))


def describe_sources(tfds_data_dir: str | None = None) -> list[str]:
    """The sources this machine can load right now, without internet: always 'digits', plus the
    offered TFDS datasets that are already prepared in the TFDS data directory."""
    prepared = [name for name in OFFERED_TFDS_DATASETS if _tfds_is_prepared(name, tfds_data_dir)]
    return ["digits"] + [f"tfds:{name}" for name in prepared]


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer (pixels per side), got {image_size!r}")


def _check_test_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


def _unknown_source_message(source: str) -> str:
    message = f"Unknown data source {source!r}. Valid forms: {SOURCE_FORMS}."
    if os.path.isdir(os.path.expanduser(source)):
        message += f" To train on that directory, write 'folder:{source}'."
    return message


# --------------------------------------------------------------------------------------------
# Splitting labelled data
# --------------------------------------------------------------------------------------------


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) holding out `test_fraction` of every class, deterministic in `seed`.

    Every class keeps at least one image in train (so the kNN memory bank and the probe see every
    class); a class of one image is therefore train-only. A class of two or more gives at least one
    test image when test_fraction > 0, so accuracy covers every class. Indices come back sorted, so
    each split keeps the source's order.
    """
    _check_test_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = _class_test_count(len(members), test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    nothing = [np.zeros(0, dtype=np.int64)]
    return np.sort(np.concatenate(train + nothing)), np.sort(np.concatenate(test + nothing))


def _class_test_count(n: int, test_fraction: float) -> int:
    if n < 2 or test_fraction == 0:
        return 0
    return min(max(math.floor(n * test_fraction + 0.5), 1), n - 1)


def _labelled_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    test_fraction: float,
    seed: int,
    paths: list[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> Dataset:
    """A Dataset whose test split is a stratified hold-out of `images`."""
    train, test = stratified_split(labels, test_fraction, seed)
    has_test = len(test) > 0
    return Dataset(
        name=name,
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test] if has_test else None,
        test_labels=labels[test] if has_test else None,
        class_names=list(class_names),
        skipped=list(skipped or []),
        train_paths=[paths[i] for i in train] if paths is not None else None,
        test_paths=[paths[i] for i in test] if paths is not None and has_test else None,
    )


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def _load_digits(image_size: int, *, test_fraction: float, seed: int) -> Dataset:
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes a moment to import

    digits = load_digits()
    # The digits are 4-bit intensities (0-16); stretch them to the 0-255 range photos have.
    gray = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack([_resize_gray(image, image_size) for image in gray])
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int32)
    class_names = [str(name) for name in digits.target_names]
    return _labelled_dataset("digits", images, labels, class_names, test_fraction=test_fraction, seed=seed)


def _resize_gray(image: np.ndarray, image_size: int) -> np.ndarray:
    resized = Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(resized)


# --------------------------------------------------------------------------------------------
# Decoding one image
# --------------------------------------------------------------------------------------------


def decode_image(source, image_size: int, *, name: str | None = None) -> np.ndarray:
    """Decode a path, bytes, binary file object or PIL image to uint8 RGB (image_size, image_size, 3).

    Any mode becomes RGB (alpha composited onto white, 16-bit scaled to 8-bit); EXIF orientation is
    applied; the image is centre-cropped to a square and resized, because SSL encoders take square
    inputs and cropping keeps the content's aspect ratio instead of squashing it. Raises DataError
    naming the file (or `name`, e.g. an upload's original filename) when it cannot be decoded.
    """
    _check_image_size(image_size)
    label = name or _source_label(source)
    try:
        return _center_crop_resize(_decode_rgb(source, image_size), image_size)
    except Image.DecompressionBombError as error:
        raise _bad_image(label, f"refused to decode a possible decompression bomb ({error}); if you trust "
                         "the file, downscale it first") from error
    except Exception as error:  # Pillow raises many types on corrupt data; all mean "unreadable".
        raise _bad_image(label, _failure_reason(source, error)) from error


def _bad_image(label: str, reason: str) -> DataError:
    error = DataError(f"{label}: {reason}")
    error.reason = reason  # kept apart so folder loading can list (path, reason) pairs
    return error


def _source_label(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of image data>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    return str(getattr(source, "name", "<file object>"))


def _failure_reason(source, error: Exception) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) == 0:
        return "empty data (0 bytes); re-export or remove it"
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source) and os.path.getsize(source) == 0:
        return "empty file (0 bytes); re-export or remove it"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file Pillow can read (wrong extension, or not an image at all); remove it"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not an image file"
    return f"corrupt or truncated image data ({type(error).__name__}: {error}); re-export or remove it"


def _decode_rgb(source, image_size: int) -> Image.Image:
    if isinstance(source, Image.Image):
        source.load()
        return _to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    with Image.open(source) as image:
        # JPEGs can decode straight at a reduced scale (still >= image_size on both sides): a big
        # photo then decodes several times faster, with no visible cost after the resize below.
        image.draft(image.mode, (image_size, image_size))
        image.load()  # truncation only shows up here, not in Image.open
        return _to_rgb(ImageOps.exif_transpose(image))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite_on_white(image.convert("RGBA"))
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float images to 8 bits instead of clipping them.

    16-bit and 'I' (how some Pillow versions open 16-bit PNGs) are read as 0-65535 and divided by
    257, which maps 65535 to 255 exactly. Float images have no standard range: values already in
    [0, 1] are scaled by 255, anything else is stretched from its own min to max.
    """
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        values = _float_to_unit_range(values) * 255.0
    else:
        values = np.clip(values, 0, 65535) / 257.0
    gray = np.rint(values).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")  # 2-D uint8 -> mode L


def _float_to_unit_range(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _center_crop_resize(image: Image.Image, image_size: int) -> np.ndarray:
    width, height = image.size
    if (width, height) != (image_size, image_size):
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.resize(
            (image_size, image_size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)
        )
    return np.asarray(image, dtype=np.uint8)


def _array_to_square_rgb(array: np.ndarray, image_size: int) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 array -> (S, S, 3), like decode_image."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return _center_crop_resize(_to_rgb(Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))), image_size)


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------


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
        raise DataError(f"{root} is a file, not a folder. Point 'folder:' at the folder that holds your images.")
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
        "Fix or remove them, or load with skip_bad_images=True to leave them out "
        "(they are then listed in Dataset.skipped)."
    )


def _first(bad: list[tuple[str, str]]) -> str:
    path, reason = bad[0]
    return f"e.g. {path}: {reason}"


# --------------------------------------------------------------------------------------------
# The decoded-folder cache
# --------------------------------------------------------------------------------------------


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
    """Write atomically (temp file + rename), so a crash or a parallel run never leaves half a cache.

    A cache that cannot be written only costs speed next time, so failures are logged, not raised.
    """
    directory = os.path.dirname(cache_file)
    temporary = None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **_arrays_from_folder(folder))
        os.replace(temporary, cache_file)
        temporary = None
        _prune_stale_caches(cache_file)
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


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets
# --------------------------------------------------------------------------------------------


def _load_tfds(
    source: str, name: str, image_size: int, *, test_fraction: float, seed: int, data_dir: str | None, download: bool
) -> Dataset:
    tfds = _import_tfds()
    builder = _tfds_builder(tfds, name, data_dir)
    if download:
        _download(builder, name)
    image_key, label_key = _tfds_feature_keys(tfds, builder, name)
    class_names = [str(label) for label in builder.info.features[label_key].names]

    def read(split: str, labelled: bool = True):
        return _read_tfds_split(builder, name, split, image_key, label_key if labelled else None, image_size)

    known_splits = set(builder.info.splits.keys())  # empty until prepared (and under tfds mocks)
    if _base_name(name) == "stl10" or "unlabelled" in known_splits:
        pool, _ = read("unlabelled", labelled=False)
        probe_images, probe_labels = read("train")
        test_images, test_labels = read("test")
        return Dataset(
            name=source, train_images=pool, train_labels=None, test_images=test_images, test_labels=test_labels,
            class_names=class_names, probe_images=probe_images, probe_labels=probe_labels,
        )
    train_images, train_labels = read("train")
    if known_splits and "test" not in known_splits:
        return _labelled_dataset(
            source, train_images, train_labels, class_names, test_fraction=test_fraction, seed=seed
        )
    test_images, test_labels = read("test")
    return Dataset(
        name=source, train_images=train_images, train_labels=train_labels,
        test_images=test_images, test_labels=test_labels, class_names=class_names,
    )


def _base_name(name: str) -> str:
    """'stl10:1.0.0' or 'stl10/config' -> 'stl10'."""
    return re.split(r"[:/]", name, maxsplit=1)[0]


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(
            f"'tfds:' sources need TensorFlow Datasets, which failed to import ({error}). "
            "Install it with `pip install tensorflow-datasets`, or use 'digits' or 'folder:PATH'."
        ) from error
    return tfds


def _tfds_builder(tfds, name: str, data_dir: str | None):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise DataError(
            f"TensorFlow Datasets has no dataset named {name!r}. See https://www.tensorflow.org/datasets/catalog "
            "for names (image classification datasets such as cifar10 or stl10 work)."
        ) from error
    except Exception as error:  # e.g. a version or config this tfds release does not know
        raise DataError(f"Cannot open tfds:{name} ({type(error).__name__}: {error}).") from error


def _download(builder, name: str) -> None:
    try:
        builder.download_and_prepare()
    except ModuleNotFoundError as error:  # tfds imports some of its dependencies only to download
        raise DataError(
            f"Downloading tfds:{name} needs the Python package {error.name!r}, which is not installed: "
            f"`pip install {error.name}`, then try again."
        ) from error
    except Exception as error:  # network, disk and checksum failures all surface differently
        raise DataError(
            f"Could not download and prepare tfds:{name} into {builder.data_dir} ({type(error).__name__}: "
            f"{error}). This needs internet access; on a machine without it, run `tfds build {_base_name(name)}` "
            "elsewhere and copy the data directory over."
        ) from error


def _tfds_feature_keys(tfds, builder, name: str) -> tuple[str, str]:
    """The (image, label) feature names: the supervised keys if they fit, else the first of each type."""
    features = builder.info.features
    images = [key for key, feature in features.items() if isinstance(feature, tfds.features.Image)]
    labels = [key for key, feature in features.items() if isinstance(feature, tfds.features.ClassLabel)]
    supervised = builder.info.supervised_keys
    if supervised and len(supervised) == 2 and supervised[0] in images and supervised[1] in labels:
        return supervised[0], supervised[1]
    if not images or not labels:
        raise DataError(
            f"tfds:{name} is not an image classification dataset (it needs an Image and a ClassLabel "
            f"feature; it has {', '.join(features.keys())}). Choose another dataset, or export it to a folder."
        )
    return images[0], labels[0]


def _read_tfds_split(builder, name: str, split: str, image_key: str, label_key: str | None, image_size: int):
    """(images uint8 (N, S, S, 3), labels int32 or None) of one split, resized batch by batch so
    the full-resolution split never has to sit in memory at once."""
    import tensorflow_datasets as tfds

    fixed_shape = None not in builder.info.features[image_key].shape
    dataset = _tfds_split_dataset(builder, name, split, batched=fixed_shape)
    images, labels = [], []
    for example in tfds.as_numpy(dataset):
        batch = example[image_key] if fixed_shape else example[image_key][None]
        images.append(_resize_batch(batch, image_size))
        if label_key is not None:
            labels.append(np.atleast_1d(example[label_key]).astype(np.int32))
    image_array = _concatenate_images(images, image_size)
    if label_key is None:
        return image_array, None
    return image_array, np.concatenate(labels) if labels else np.zeros(0, np.int32)


def _tfds_split_dataset(builder, name: str, split: str, *, batched: bool):
    _stop_tensorflow_reserving_gpu_memory()
    try:
        return builder.as_dataset(split=split, shuffle_files=False, batch_size=_TFDS_BATCH if batched else None)
    except AssertionError as error:  # how tfds says "not downloaded and prepared"
        raise DataError(_not_prepared_message(builder, name)) from error
    except ValueError as error:  # e.g. a split the dataset does not have
        raise DataError(f"tfds:{name}: cannot read split {split!r} ({error}).") from error


def _resize_batch(batch: np.ndarray, image_size: int) -> np.ndarray:
    if batch.shape[1:] == (image_size, image_size, 3) and batch.dtype == np.uint8:
        return batch
    return np.stack([_array_to_square_rgb(image, image_size) for image in batch])


def _concatenate_images(chunks: list[np.ndarray], image_size: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.ascontiguousarray(np.concatenate(chunks))


def _not_prepared_message(builder, name: str) -> str:
    root = getattr(builder, "_data_dir_root", None) or builder.data_dir
    base = _base_name(name)
    return (
        f"tfds:{name} is not prepared in the TFDS data directory {root} (looked for {builder.data_dir}), "
        f"and downloading was not asked for. Either run `tfds build {base} --data_dir DIR` on a machine "
        "with internet, copy DIR here and point sslcore at it (tfds_data_dir= / --tfds-data-dir, or the "
        "TFDS_DATA_DIR environment variable); or, where there is internet, load with download=True."
    )


def _tfds_root(data_dir: str | None) -> str:
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets"))


def _tfds_is_prepared(name: str, data_dir: str | None) -> bool:
    root = _tfds_root(data_dir)
    if "://" not in root and not os.path.isdir(os.path.join(root, name)):
        return False  # the common case answered without importing TensorFlow Datasets at all
    try:
        import tensorflow_datasets as tfds

        return bool(tfds.builder(name, data_dir=root).is_prepared())
    except Exception:  # any failure means "not usable here", which is all this question asks
        return False


def _stop_tensorflow_reserving_gpu_memory() -> None:
    """Keep tfds's TensorFlow from grabbing the GPU that training needs.

    TensorFlow reserves nearly all GPU memory the moment it starts, and tfds starts it. Reading
    data needs no GPU, so before TensorFlow has touched the GPUs: hide them from it when Keras runs
    on another backend (JAX, PyTorch), and otherwise let it allocate on demand. If TensorFlow is
    already running, the caller's configuration stands.
    """
    try:
        import tensorflow as tf
    except ImportError:
        return  # tfds will say itself that it needs TensorFlow to read prepared data

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    try:
        if _keras_backend_in_use() not in (None, "tensorflow"):
            tf.config.set_visible_devices([], "GPU")
        else:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # devices already initialised


def _keras_backend_in_use() -> str | None:
    keras = sys.modules.get("keras")  # never imported here: only asked if the caller already did
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND")
