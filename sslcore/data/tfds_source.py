"""The ``tfds:NAME`` source: a prepared TensorFlow Datasets image-classification dataset.

Named ``tfds_source`` so it never shadows the ``tfds`` alias of ``tensorflow_datasets``, which is
imported only when such a source is loaded (or asked about).
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from sslcore.data.dataset import DataError, Dataset, _labelled_dataset, check_decoded_size
from sslcore.data.decode import _array_to_square_rgb

_TFDS_BATCH = 1024


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
    check_decoded_size(sum(int(builder.info.splits[split].num_examples) for split in known_splits), image_size, source)
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
