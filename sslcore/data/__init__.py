"""Source string -> `Dataset`: the images every other part of sslcore trains and evaluates on.

A source is one of

* ``digits`` -- scikit-learn's 1,797 handwritten 8x8 digits. It ships with scikit-learn, so it is
  the one dataset every machine has, with or without internet.
* ``folder:PATH`` -- your own images. One subfolder per class gives a labelled dataset (a
  stratified part is held out for kNN / linear-probe evaluation); a flat folder of images is an
  unlabelled pretraining pool. PATH may be a .zip / .tar / .tar.gz of such a folder: it is checked
  entry by entry and unpacked once into the cache (``archives``).
* ``hf:OWNER/NAME[@REVISION][:CONFIG]`` -- a Hugging Face Hub image dataset stored as parquet, e.g.
  ``hf:uoft-cs/cifar10`` (``hf_source``): the way CIFAR-10 and STL-10 reach a Space, where tfds cannot.
* ``tfds:NAME`` -- a prepared TensorFlow Datasets image-classification dataset, e.g. ``tfds:cifar10``
  or ``tfds:stl10`` (STL-10's 100,000 unlabelled images are the pretraining pool and its labelled
  'train' split feeds the probe, as in the keras.io semi-supervised SimCLR example).

Everything ends up as one resident uint8 array of shape (N, S, S, 3): the trainer indexes batches
out of it on the accelerator and augments there, so decoding happens once, here, and a decoded
folder is cached on disk so the next run starts in seconds.

One job per module, in the order the data flows:

* ``sources``     -- `load()`: source string -> `Dataset`; `describe_sources()`; `check_source()` before loading
* ``dataset``     -- the `Dataset` / `FolderImages` containers, `DataError`, the stratified split
* ``decode``      -- one image (file, bytes, Pillow image) -> square uint8 RGB
* ``digits``      -- the ``digits`` source
* ``folders``     -- the ``folder:`` source: layout checks, threaded decoding
* ``cache``       -- the on-disk cache of decoded folders
* ``tfds_source`` -- the ``tfds:`` source
* ``hf_source``   -- the ``hf:`` source: parquet files from the Hub, decoded in a stream, cached
* ``archives``    -- safe extraction of uploaded or local archives (no entry outside its folder, size limits)

This package deliberately does not import Keras (it must stay backend-free and quick to import);
TensorFlow Datasets is imported only when a ``tfds:`` source is loaded.
"""

from __future__ import annotations

from sslcore.data.cache import CACHE_FORMAT_VERSION, default_cache_dir
from sslcore.data.dataset import DataError, Dataset, FolderImages, stratified_split
from sslcore.data.decode import decode_image
from sslcore.data.folders import IMAGE_EXTENSIONS, load_folder
from sslcore.data.sources import (OFFERED_TFDS_DATASETS, SOURCE_FORMS, check_source, describe_sources,
                                  known_train_count, load)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "IMAGE_EXTENSIONS",
    "OFFERED_TFDS_DATASETS",
    "SOURCE_FORMS",
    "DataError",
    "Dataset",
    "FolderImages",
    "check_source",
    "decode_image",
    "default_cache_dir",
    "describe_sources",
    "known_train_count",
    "load",
    "load_folder",
    "stratified_split",
]
