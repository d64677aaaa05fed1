"""The entry point: a source string ('digits', 'folder:PATH', 'tfds:NAME', 'hf:OWNER/NAME') -> `Dataset`.

Only dispatch and argument checks live here; each kind of source has its own module.
"""

from __future__ import annotations

import functools
import os

from sslcore.data.dataset import DataError, Dataset, _check_image_size, _check_test_fraction
from sslcore.data.digits import _load_digits
from sslcore.data.folders import _dataset_from_folder, load_folder
from sslcore.data.tfds_source import _load_tfds, _tfds_is_prepared

SOURCE_FORMS = ("'digits', 'folder:PATH', 'tfds:NAME' (e.g. 'tfds:cifar10', 'tfds:stl10') or 'hf:OWNER/NAME' "
                "(a Hugging Face Hub dataset, e.g. 'hf:uoft-cs/cifar10')")

# Only these are offered by describe_sources(): the datasets sslcore's recipes are tuned for.
OFFERED_TFDS_DATASETS = ("cifar10", "stl10")


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
    progress: bool = False,
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
        from sslcore.data.archives import archive_folder, is_archive

        path = os.path.expanduser(argument)
        if not (os.path.isfile(path) and is_archive(path)):
            folder = load_folder(path, image_size, skip_bad_images=skip_bad_images, cache_dir=cache_dir)
            return _dataset_from_folder(source, folder, test_fraction=test_fraction, seed=seed)
        extracted = archive_folder(path, cache_dir=os.path.join(cache_dir, "archives") if cache_dir else None)
        try:  # layout errors would otherwise name only the extraction folder in the cache
            folder = load_folder(extracted, image_size, skip_bad_images=skip_bad_images, cache_dir=cache_dir)
        except DataError as error:
            raise DataError(f"In archive {argument}: {error}") from error
        return _dataset_from_folder(source, folder, test_fraction=test_fraction, seed=seed)
    if kind == "tfds" and argument:
        return _load_tfds(
            source, argument, image_size,
            test_fraction=test_fraction, seed=seed, data_dir=tfds_data_dir, download=download,
        )
    if kind == "hf" and argument:
        from sslcore.data.hf_source import load_hf  # pyarrow and huggingface_hub load only for this source

        return load_hf(source, argument, image_size, test_fraction=test_fraction, seed=seed, progress=progress)
    raise DataError(_unknown_source_message(source))


def describe_sources(tfds_data_dir: str | None = None) -> list[str]:
    """The sources this machine can load right now, without internet: always 'digits', plus the
    offered TFDS datasets that are already prepared in the TFDS data directory."""
    prepared = [name for name in OFFERED_TFDS_DATASETS if _tfds_is_prepared(name, tfds_data_dir)]
    return ["digits"] + [f"tfds:{name}" for name in prepared]


def check_source(source: str, tfds_data_dir: str | None = None) -> None:
    """Raise DataError for a source that cannot load on this machine, without loading it: a missing folder or
    archive, a TFDS dataset that is not prepared (there may be no internet to download it), ``hf:`` without a name.

    Cheap enough to refuse a run before a process is started for it; what only decoding can tell (a broken image, an
    unreachable Hub dataset) still surfaces from ``load``.
    """
    kind, _, argument = source.partition(":")
    if source == "digits":
        return
    if kind == "folder":
        from sslcore.data.archives import is_archive

        folder = os.path.expanduser(argument)
        if not argument or not (os.path.isdir(folder) or (os.path.isfile(folder) and is_archive(folder))):
            raise DataError(f"Data folder {argument!r} does not exist (or is not a folder or a .zip/.tar/.tar.gz "
                            "archive of images): check the path after 'folder:'")
    elif kind == "tfds":
        offered = describe_sources(tfds_data_dir)
        if source not in offered:
            raise DataError(f"{source} is not prepared on this machine (no internet to download it): prepare it "
                            f"with tensorflow-datasets first, or pick one of {', '.join(offered)}")
    elif kind == "hf":
        if not argument.strip():
            raise DataError("Name the Hugging Face dataset after 'hf:', e.g. hf:uoft-cs/cifar10")
    else:
        raise DataError(_unknown_source_message(source))


@functools.lru_cache(maxsize=8)
def known_train_count(source: str, test_fraction: float, seed: int) -> int | None:
    """How many images the source's pretraining split holds, when that is known without decoding a folder or
    downloading anything (digits only; None for the others), so a batch larger than the data is refused up front."""
    if source != "digits":
        return None
    return len(load(source, 8, test_fraction=test_fraction, seed=seed).train_images)


def _unknown_source_message(source: str) -> str:
    from sslcore.credentials import on_public_server

    message = f"Unknown data source {source!r}. Valid forms: {SOURCE_FORMS}."
    # Not on a public server: there the hint would tell a stranger which server paths exist.
    if not on_public_server() and os.path.isdir(os.path.expanduser(source)):
        message += f" To train on that directory, write 'folder:{source}'."
    return message
