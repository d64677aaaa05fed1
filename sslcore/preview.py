"""Look at augmentations before training with them: a grid of originals next to random views.

The views come from ``sslcore.augment.Augmenter`` itself, the layer the trainer uses, so what the preview
shows is what the encoder will see. ``augment_controls()`` flattens ``AugmentConfig`` into one number or
switch per control (a ``(min, max)`` pair becomes two sliders), so a page can build its sliders from the
dataclass instead of repeating its fields.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any

import numpy as np

from sslcore.augment import DEFAULT_PRESET, PRESETS, AugmentConfig, Augmenter, augment, resolve_config

# Names for the parts of tuple-valued fields; a pair is (min, max) unless named here.
_PART_NAMES = {"color_jitter": ("brightness", "contrast", "saturation", "hue")}

# Slider ranges: wide enough for every preset and for the published recipes, narrow enough to aim with.
_RANGES = {
    "crop_scale": (0.02, 1.0, 0.01), "crop_ratio": (0.25, 4.0, 0.05), "brightness": (0.0, 1.5, 0.05),
    "jitter": (0.0, 1.0, 0.05), "color_jitter": (0.0, 1.0, 0.05), "color_jitter_hue": (0.0, 0.5, 0.01),
    "color_jitter_prob": (0.0, 1.0, 0.05), "grayscale_prob": (0.0, 1.0, 0.05), "blur_prob": (0.0, 1.0, 0.05),
    "blur_sigma": (0.1, 5.0, 0.1),
}


def augment_controls(preset: str = DEFAULT_PRESET) -> list[dict[str, Any]]:
    """One control per number or switch of AugmentConfig: name, label, kind, range and the preset's value."""
    config = PRESETS[preset]
    controls = []
    for field in dataclasses.fields(AugmentConfig):
        value = getattr(config, field.name)
        if isinstance(value, bool):
            controls.append({"name": field.name, "label": field.name.replace("_", " "), "kind": "bool", "value": value})
            continue
        parts = _PART_NAMES.get(field.name, ("min", "max")) if isinstance(value, tuple) else (None,)
        for index, part in enumerate(parts):
            name = f"{field.name}_{part}" if part else field.name
            low, high, step = _RANGES.get(name, _RANGES.get(field.name, (0.0, 1.0, 0.05)))
            current = value[index] if part else value
            controls.append({"name": name, "label": name.replace("_", " "), "kind": "float", "minimum": low,
                             "maximum": max(high, current), "step": step, "value": current})
    return controls


def control_values(preset: str) -> dict[str, Any]:
    return {control["name"]: control["value"] for control in augment_controls(preset)}


def config_from_controls(values: dict[str, Any]) -> AugmentConfig:
    """The AugmentConfig that a set of control values describes (ValueError naming the field if it cannot)."""
    fields = {}
    for field in dataclasses.fields(AugmentConfig):
        default = getattr(PRESETS[DEFAULT_PRESET], field.name)
        if isinstance(default, tuple):
            parts = _PART_NAMES.get(field.name, ("min", "max"))
            fields[field.name] = tuple(float(values.get(f"{field.name}_{part}", default[i])) for i, part in enumerate(parts))
        elif isinstance(default, bool):
            fields[field.name] = bool(values.get(field.name, default))
        else:
            fields[field.name] = float(values.get(field.name, default))
    for name in ("crop_scale", "crop_ratio", "blur_sigma"):
        low, high = fields[name]
        if low > high:
            raise ValueError(f"{name.replace('_', ' ')}: the min ({low:g}) is above the max ({high:g}); move one of the two")
    return AugmentConfig(**fields)


def views(images_uint8: np.ndarray, config: AugmentConfig | str, draws: int, seed: int = 0) -> np.ndarray:
    """``draws`` random views of each image, uint8 (draws, N, H, W, 3): what ``Augmenter(config, seed=seed)`` draws,
    in one call for all of them."""
    import keras

    images = np.asarray(images_uint8)
    batch = np.tile(images.astype("float32") / 255.0, (draws, 1, 1, 1))
    graph = _preset_graph(_preset_name(resolve_config(config)))
    augmented = graph(batch, seed) if graph else Augmenter(config, seed=seed)(batch, training=True)
    pixels = np.asarray(keras.ops.convert_to_numpy(augmented)) * 255.0
    return np.rint(np.clip(pixels, 0, 255)).astype(np.uint8).reshape((draws,) + images.shape)


def _preset_name(config: AugmentConfig) -> str | None:
    return next((name for name, preset in PRESETS.items() if preset == config), None)


class _TracedAugment:
    """One preset's augmentation as a TensorFlow graph, seeded per call exactly as a fresh ``Augmenter(seed=...)``.

    Every visitor's preview draws each preset (and the custom grid starts as the default one); run eagerly each costs
    15-27 ms of op dispatch for 16 views at 64 px, traced about 5 ms (measured on 2 CPU cores). Custom settings stay
    eager: a dragged slider makes a new config at every step, and tracing one costs more than running it once.
    """

    def __init__(self, config: AugmentConfig):
        import keras
        import tensorflow as tf

        self.generator = keras.random.SeedGenerator(0)
        self.function = tf.function(lambda batch: augment(batch, config, self.generator))
        self.lock = threading.Lock()     # the generator's state is shared: one seeded call at a time (~5 ms)

    def __call__(self, batch: np.ndarray, seed: int):
        with self.lock:
            # SeedGenerator(seed) starts from the state [seed, 0]; setting it reproduces that generator's draws.
            self.generator.state.assign(np.array([seed, 0]).astype(self.generator.state.dtype))
            return self.function(batch)


@functools.lru_cache(maxsize=None)
def _preset_graph(name: str | None) -> _TracedAugment | None:
    import keras

    if name is None or keras.backend.backend() != "tensorflow":
        return None
    return _TracedAugment(PRESETS[name])


def preview_augmentations(images_uint8: np.ndarray, config: AugmentConfig | str, draws: int = 4, seed: int = 0,
                          cell: int = 96, padding: int = 4) -> np.ndarray:
    """A uint8 grid: one row per image, the original first, then ``draws`` random views of it."""
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3); got shape {images.shape}")
    drawn = views(images, config, draws, seed)
    columns = [images] + list(drawn)
    return tile([[column[row] for column in columns] for row in range(len(images))], cell, padding)


def tile(rows: list[list[np.ndarray]], cell: int = 96, padding: int = 4, background: int = 255) -> np.ndarray:
    """Images laid out in a grid, each scaled to ``cell`` px with nearest-neighbour (pixels stay visible)."""
    height = len(rows) * (cell + padding) + padding
    width = max(len(row) for row in rows) * (cell + padding) + padding
    canvas = np.full((height, width, 3), background, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = padding + r * (cell + padding), padding + c * (cell + padding)
            canvas[top: top + cell, left: left + cell] = enlarge(image, cell)
    return canvas


def enlarge(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize: small images (8 px digits) stay crisp instead of blurring."""
    rows = np.arange(size) * image.shape[0] // size
    cols = np.arange(size) * image.shape[1] // size
    return np.take(np.take(image, rows, axis=0), cols, axis=1)   # a third of fancy indexing's time


# TFDS sets are large (CIFAR-10: 50,000 images): a preview keeps them at 32 px in memory and enlarges the few
# images it shows, instead of resizing the whole set to every size the slider visits.
TFDS_PREVIEW_SIZE = 32


@functools.lru_cache(maxsize=2)
def _dataset_images(source: str, image_size: int) -> np.ndarray:
    from sslcore.data import load

    return load(source, image_size).train_images


def sample_images(source: str, image_size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` images of a data source at ``image_size``, picked at random (the same ones for the same seed)."""
    from PIL import Image

    pool_size = min(image_size, TFDS_PREVIEW_SIZE) if source.startswith("tfds:") else image_size
    images = _dataset_images(source, pool_size)
    picked = images[np.sort(np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False))]
    if pool_size == image_size:
        return picked
    resize = lambda image: np.asarray(Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BICUBIC))
    return np.stack([resize(image) for image in picked])
