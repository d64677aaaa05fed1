"""The ``digits`` source: scikit-learn's 8x8 handwritten digits, the dataset every machine has."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sslcore.data.dataset import Dataset, _labelled_dataset


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
