"""What every data source produces: the `Dataset` (and a decoded folder's `FolderImages`), the
`DataError` they raise, and the stratified hold-out that gives a labelled source its test split."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


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


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer (pixels per side), got {image_size!r}")


DECODED_LIMIT_ENV = "SSLCORE_MAX_DECODED_MB"
PUBLIC_DECODED_LIMIT_MB = 4096   # a public server's default: one visitor's data set must not take the server's memory


def decoded_limit_bytes() -> int | None:
    """How much one decoded data set may take in memory: ``SSLCORE_MAX_DECODED_MB``, else 4 GiB on a public server
    (a Space, where a stranger picks the data and the image size) and no limit on the user's own machine."""
    from sslcore import credentials

    return credentials.size_limit_bytes(DECODED_LIMIT_ENV, PUBLIC_DECODED_LIMIT_MB)


def check_decoded_size(count: int, image_size: int, what: str) -> None:
    """Refuse, before decoding anything, a data set whose decoded images would not fit the limit above."""
    limit = decoded_limit_bytes()
    needed = count * image_size * image_size * 3
    if limit is None or needed <= limit:
        return
    fits = int(math.sqrt(limit / (3 * count)))
    raise DataError(f"{what}: {count:,} images at {image_size} px would take {needed / 1024 ** 3:.1f} GB of memory "
                    f"once decoded, over this server's limit of {limit / 1024 ** 3:.1f} GB ({DECODED_LIMIT_ENV}): "
                    f"pick an image size of {fits} px or less, or fewer images")


def _check_test_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


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
