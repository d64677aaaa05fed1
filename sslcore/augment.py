"""Random image augmentation for self-supervised learning, on the accelerator, on every Keras backend.

Why these transforms: contrastive methods (SimCLR, MoCo, BYOL, ...) learn by pulling two random views of
one image together and pushing other images away. Whatever the views share is what the encoder may keep,
so the augmentation *defines* the invariances that are learned:

* **random resized crop** is the main signal. Two crops of one image show overlapping or neighbouring
  parts at different scales, so matching them teaches part-to-whole and local-to-global prediction, and
  scale invariance. Without it the task is trivial (the views are identical).
* **colour distortion** closes the shortcut that crops alone leave open: crops of one image share the
  same colour histogram, and a network happily matches histograms instead of learning shapes. Jittering
  brightness/contrast/saturation/hue (and sometimes dropping colour with grayscale) per view makes the
  histogram useless as an identity cue. SimCLR (Chen et al. 2020, Fig. 5) found crop + colour together far
  stronger than either alone.
* **flip** and **blur** are cheap extra invariances (left/right symmetry; fine texture).

Everything is written with ``keras.ops`` / ``keras.random`` only, with no gathers and no
``ImageProjectiveTransform``: TensorFlow has no XLA kernel for that op (it is why Keras's own RandomZoom /
RandomTranslation / RandomCrop report ``supports_jit=False`` and turn XLA off for the whole model), and
``keras.ops.image.affine_transform`` uses it on the TensorFlow backend, so it cannot be used here either.
Crop + flip is an axis-aligned affine map, hence *separable*: per image, ``rows @ image @ columns^T``
with bilinear interpolation matrices, two batched matmuls that XLA compiles on every backend and that
agree with ``affine_transform(..., interpolation="bilinear", fill_mode="nearest")`` to ~1e-5. The
per-image Gaussian blur is the same kind of product, with banded blur matrices.

Every random quantity is drawn once *per image* (shape ``(batch, ...)``), so views in one batch differ;
stages that do nothing for a config are skipped at trace time, so the seeds' presets pay nothing for
SimCLR's extra stages.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

__all__ = ["AugmentConfig", "PRESETS", "augment_config", "augment", "Augmenter"]

# ITU-R BT.601 luma weights (what torchvision's rgb_to_grayscale uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# RGB -> YIQ (NTSC). Its Y row is the luma above, so rotating the (I, Q) chroma plane changes hue while
# keeping brightness: a linear 3x3 per image, far cheaper than a round trip through HSV.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], "float64"
)


# ---------------------------------------------------------------------------------------------- config


@dataclass
class AugmentConfig:
    """What random views look like. ``validate()`` runs on construction; see ``PRESETS``.

    Geometry: a random resized crop per image whose area is a fraction ``crop_scale`` of the image and
    whose aspect ratio, *relative to the image's own aspect*, is log-uniform in ``crop_ratio`` (so (1, 1)
    never stretches content; on square images this is torchvision's pixel aspect ratio), resized back to
    the input size; then a horizontal flip with p=0.5 if ``flip``.

    Colour, in this order: the seeds' colour affine (``brightness``, ``jitter``); torchvision-style
    ``color_jitter`` = (brightness, contrast, saturation, hue) applied to an image with probability
    ``color_jitter_prob``; grayscale with probability ``grayscale_prob``; Gaussian blur with probability
    ``blur_prob`` and sigma uniform in ``blur_sigma``, **in pixels of the image as it is fed in** (SimCLR
    draws sigma in [0.1, 2.0] at 224 px; the same sigma on a 32 px image blurs 7x more of the content,
    which is why blur is usually off for CIFAR-sized images). The kernel radius is ceil(3 * max sigma),
    at most the image size - 1.
    """

    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    flip: bool = True
    # The seeds' colour affine (keras.io SimCLR / contrastive-classification-keras): per image,
    # x @ (I * (1 + U(-brightness, brightness)) + U(-jitter, jitter)^{3x3}), clipped to [0, 1].
    brightness: float = 0.6
    jitter: float = 0.2
    # torchvision ColorJitter strengths: brightness, contrast, saturation (factors U(max(0, 1-s), 1+s))
    # and hue (shift U(-h, h) of a full turn, h <= 0.5).
    color_jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    color_jitter_prob: float = 0.8
    grayscale_prob: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        self.crop_scale = _as_float_tuple("crop_scale", self.crop_scale, 2)
        self.crop_ratio = _as_float_tuple("crop_ratio", self.crop_ratio, 2)
        self.color_jitter = _as_float_tuple("color_jitter", self.color_jitter, 4)
        self.blur_sigma = _as_float_tuple("blur_sigma", self.blur_sigma, 2)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value cannot describe a real augmentation."""
        low, high = self.crop_scale
        _require(0.0 < low <= high <= 1.0, f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        low, high = self.crop_ratio
        _require(0.0 < low <= high < math.inf, f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        _require(isinstance(self.flip, (bool, np.bool_)), f"flip must be a bool, got {self.flip!r}")
        for name in ("brightness", "jitter"):
            value = getattr(self, name)
            _require(_is_real(value) and 0.0 <= value < math.inf, f"{name} must be a finite number >= 0, got {value!r}")
        _require(
            all(0.0 <= value < math.inf for value in self.color_jitter),
            f"color_jitter strengths must be finite and >= 0, got {self.color_jitter}",
        )
        _require(self.color_jitter[3] <= 0.5, f"color_jitter hue must be <= 0.5 (half a turn), got {self.color_jitter[3]}")
        for name in ("color_jitter_prob", "grayscale_prob", "blur_prob"):
            value = getattr(self, name)
            _require(_is_real(value) and 0.0 <= value <= 1.0, f"{name} must be a probability in [0, 1], got {value!r}")
        low, high = self.blur_sigma
        _require(0.0 < low <= high < math.inf, f"blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")

    def to_dict(self) -> dict:
        """JSON-friendly: tuples become lists."""
        return {field.name: _jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "AugmentConfig":
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown AugmentConfig keys {sorted(unknown)}; valid keys: {field_names()}")
        return cls(**values)


def field_names() -> list[str]:
    return [field.name for field in dataclasses.fields(AugmentConfig)]


def _as_float_tuple(name: str, value, length: int) -> tuple[float, ...]:
    try:
        numbers = tuple(float(item) for item in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of {length} numbers, got {value!r}") from None
    _require(len(numbers) == length, f"{name} must have {length} numbers, got {value!r}")
    return numbers


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


PRESETS: dict[str, AugmentConfig] = {
    # The seeds' classification augmentation: mild, keeps most of the object in view.
    "weak": AugmentConfig(crop_scale=(0.75, 1.0), crop_ratio=(1.0, 1.0), flip=True, brightness=0.3, jitter=0.1),
    # The seeds' contrastive augmentation: small crops + strong colour affine.
    "strong": AugmentConfig(crop_scale=(0.25, 1.0), crop_ratio=(1.0, 1.0), flip=True, brightness=0.6, jitter=0.2),
    # The training default: the seeds' crops with SimCLR's colour distortion instead of their colour affine. At a
    # 10-minute budget on CIFAR-10 it adds 3 points of linear accuracy over "strong" (docs/benchmarks.md); BYOL,
    # MoCo v2, Barlow Twins and VICReg train with the same distortion.
    "contrastive": AugmentConfig(crop_scale=(0.25, 1.0), crop_ratio=(1.0, 1.0), flip=True, brightness=0.0, jitter=0.0,
                                 color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.8, grayscale_prob=0.2),
    # SimCLR (Chen et al. 2020, appendix A). The paper also blurs with p=0.5 at 224 px; at 32 px (CIFAR)
    # blur is usually left off because it erases most of the detail. Turn it on with blur_prob=0.5.
    "simclr": AugmentConfig(
        crop_scale=(0.08, 1.0),
        crop_ratio=(3 / 4, 4 / 3),
        flip=True,
        brightness=0.0,
        jitter=0.0,
        color_jitter=(0.4, 0.4, 0.4, 0.1),
        color_jitter_prob=0.8,
        grayscale_prob=0.2,
        blur_prob=0.0,
    ),
}
DEFAULT_PRESET = "contrastive"   # TrainConfig.augment's default, and where the preview's sliders start


def augment_config(preset: str = DEFAULT_PRESET, **overrides) -> AugmentConfig:
    """A copy of ``PRESETS[preset]`` with ``overrides`` applied (validated)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown augmentation preset {preset!r}; valid presets: {sorted(PRESETS)}")
    unknown = set(overrides) - set(field_names())
    if unknown:
        raise ValueError(f"Unknown augmentation options {sorted(unknown)}; valid options: {field_names()}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def resolve_config(config: AugmentConfig | dict | str) -> AugmentConfig:
    """Accept a config, its ``to_dict()`` form, or a preset name."""
    if isinstance(config, AugmentConfig):
        return dataclasses.replace(config)  # a copy, re-validated (the caller may have mutated it)
    if isinstance(config, dict):
        return AugmentConfig.from_dict(config)
    if isinstance(config, str):
        return augment_config(config)
    raise ValueError(f"config must be an AugmentConfig, a dict or a preset name, got {type(config).__name__}")


# ---------------------------------------------------------------------------------------------- geometry


def sample_crop_boxes(batch_size, scale, ratio, flip, seed):
    """Per image crop (center_x, center_y, scale_x, scale_y) as fractions of the image, shape (B, 4).

    Area s ~ U(scale), aspect r log-uniform in ratio; width sqrt(s*r) and height sqrt(s/r) are clipped to
    the image (torchvision retries instead; clipping only shrinks the area of very elongated crops).
    A flip is a negative ``scale_x``: the crop is read right to left.
    """
    area = keras.random.uniform((batch_size,), scale[0], scale[1], seed=seed)
    if ratio[0] == ratio[1]:
        aspect = ratio[0]  # a constant: no draw
    else:
        aspect = ops.exp(keras.random.uniform((batch_size,), math.log(ratio[0]), math.log(ratio[1]), seed=seed))
    width = ops.minimum(ops.sqrt(area * aspect), 1.0)
    height = ops.minimum(ops.sqrt(area / aspect), 1.0)
    # The center is uniform over the positions that keep the whole crop inside the image.
    center_x = width / 2 + keras.random.uniform((batch_size,), seed=seed) * (1.0 - width)
    center_y = height / 2 + keras.random.uniform((batch_size,), seed=seed) * (1.0 - height)
    if flip:
        heads = keras.random.uniform((batch_size,), seed=seed) < 0.5
        width = ops.where(heads, -width, width)
    return ops.stack([center_x, center_y, width, height], axis=1)


def boxes_to_pixel_maps(boxes, height: int, width: int):
    """(B, 4) boxes -> (x_scale, x_offset, y_scale, y_offset), each (B,): input = scale * output + offset.

    Pixel indices are pixel centres; output pixel i covers [i, i+1) of the output and lands in the crop at
    the same relative position, so a full-size unflipped box is exactly the identity.
    """
    center_x, center_y, scale_x, scale_y = (boxes[:, i] for i in range(4))
    x_offset = center_x * width + scale_x * (0.5 - width / 2) - 0.5
    y_offset = center_y * height + scale_y * (0.5 - height / 2) - 0.5
    return scale_x, x_offset, scale_y, y_offset


def boxes_to_affine(boxes, height: int, width: int):
    """(B, 8) transforms for ``keras.ops.image.affine_transform`` doing the same crop (reference/interop).

    Convention (checked on jax and tensorflow): output pixel (x, y) reads input ((a0 x + a1 y + a2)/k,
    (b0 x + b1 y + b2)/k), k = c0 x + c1 y + 1, in pixel-index coordinates.
    """
    x_scale, x_offset, y_scale, y_offset = boxes_to_pixel_maps(boxes, height, width)
    zeros = ops.zeros_like(x_scale)
    return ops.stack([x_scale, zeros, x_offset, zeros, y_scale, y_offset, zeros, zeros], axis=1)


def bilinear_matrices(scale, offset, size: int):
    """(B, size, size) matrices M with M[b, out, in] = bilinear weight of input pixel ``in`` for ``out``.

    Coordinates are clamped to the image first, which is ``fill_mode="nearest"``.
    """
    positions = ops.arange(size, dtype="float32")
    source = ops.clip(scale[:, None] * positions[None, :] + offset[:, None], 0.0, size - 1.0)
    return ops.relu(1.0 - ops.abs(source[:, :, None] - positions[None, None, :]))


def resample_axis_aligned(images, boxes):
    """Crop + resize (+ flip) every image to its box at the input size: two batched matmuls, XLA-friendly."""
    images, boxes = ops.convert_to_tensor(images, "float32"), ops.convert_to_tensor(boxes, "float32")
    height, width = images.shape[1], images.shape[2]
    x_scale, x_offset, y_scale, y_offset = boxes_to_pixel_maps(boxes, height, width)
    rows = bilinear_matrices(y_scale, y_offset, height)
    columns = bilinear_matrices(x_scale, x_offset, width)
    return apply_axis_matrices(images, rows, columns)


def apply_axis_matrices(images, rows, columns):
    """out[b] = rows[b] @ image[b] @ columns[b]^T per channel: any separable per-image linear resampling."""
    images = ops.einsum("byY,bYxc->byxc", rows, images)
    return ops.einsum("bxX,byXc->byxc", columns, images)


def geometry_is_identity(config: AugmentConfig) -> bool:
    return config.crop_scale == (1.0, 1.0) and config.crop_ratio == (1.0, 1.0) and not config.flip


def random_resized_crop(images, config: AugmentConfig, seed):
    boxes = sample_crop_boxes(ops.shape(images)[0], config.crop_scale, config.crop_ratio, config.flip, seed)
    return resample_axis_aligned(images, boxes)


# ---------------------------------------------------------------------------------------------- colour


def apply_color_matrices(images, matrices):
    """Per image linear colour map: pixel row vector @ matrices[b] (3x3).

    Written as three broadcast multiply-adds rather than einsum/matmul: a contraction over 3 channels is
    far too small for a matmul kernel, and this form fuses with its neighbours (8x faster on JAX CPU).
    """
    rows = matrices[:, None, None, :, :]  # (B, 1, 1, 3 in, 3 out)
    return sum(images[..., channel : channel + 1] * rows[..., channel, :] for channel in range(3))


def identity_matrices(batch_size):
    return ops.broadcast_to(ops.eye(3, dtype="float32")[None], (batch_size, 3, 3))


def random_color_affine(images, brightness: float, jitter: float, seed):
    """The seeds' colour distortion: a brightness scale on the identity plus a random 3x3 channel mix."""
    batch_size = ops.shape(images)[0]
    scales = 1.0 + keras.random.uniform((batch_size, 1, 1), -brightness, brightness, seed=seed)
    mixing = keras.random.uniform((batch_size, 3, 3), -jitter, jitter, seed=seed)
    return ops.clip(apply_color_matrices(images, identity_matrices(batch_size) * scales + mixing), 0.0, 1.0)


def grayscale(images):
    """ITU-R 601 luma, shape (B, H, W, 1). Explicit channel sum: XLA CPU reduces a size-3 minor axis slowly."""
    return sum(images[..., channel : channel + 1] * weight for channel, weight in enumerate(LUMA_WEIGHTS))


def hue_rotation_matrices(shifts):
    """(B, 3, 3) row-vector matrices shifting hue by ``shifts`` turns (torchvision's hue_factor) in YIQ.

    A positive shift moves red towards yellow, as HSV hue + shift does. Written as I + (cos - 1) A + sin S
    so that a zero shift is *exactly* the identity (no float round trip through YIQ).
    """
    from_yiq = np.linalg.inv(_RGB_TO_YIQ)
    chroma_plane = np.diag([0.0, 1.0, 1.0])
    quarter_turn = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    # Transposed because pixels are row vectors: rgb @ M == (from_yiq @ R @ to_yiq @ rgb^T)^T.
    cos_part = ops.convert_to_tensor((from_yiq @ chroma_plane @ _RGB_TO_YIQ).T.astype("float32"))
    sin_part = ops.convert_to_tensor((from_yiq @ quarter_turn @ _RGB_TO_YIQ).T.astype("float32"))
    angles = 2.0 * math.pi * shifts[:, None, None]
    return identity_matrices(ops.shape(shifts)[0]) + (ops.cos(angles) - 1.0) * cos_part + ops.sin(angles) * sin_part


def saturation_matrices(factors):
    """(B, 3, 3): factor * pixel + (1 - factor) * luma(pixel), i.e. torchvision's saturation blend."""
    towards_gray = np.outer(LUMA_WEIGHTS, np.ones(3)).astype("float32")  # pixel @ this = (luma, luma, luma)
    factors = factors[:, None, None]
    return factors * ops.eye(3, dtype="float32") + (1.0 - factors) * ops.convert_to_tensor(towards_gray)


def jitter_factors(batch_size, strength: float, apply, seed):
    """torchvision's factor U(max(0, 1-s), 1+s) per image, forced to exactly 1 where ``apply`` is False."""
    factors = keras.random.uniform((batch_size,), max(0.0, 1.0 - strength), 1.0 + strength, seed=seed)
    return ops.where(apply, factors, 1.0)


def sample_jitter_factors(batch_size, strengths, prob: float, seed) -> dict:
    """Per image (B,) factors for each active jitter, exact no-ops for the images RandomApply skips."""
    names = ("brightness", "contrast", "saturation")
    apply = keras.random.uniform((batch_size,), seed=seed) < prob
    factors = {
        name: jitter_factors(batch_size, strength, apply, seed) for name, strength in zip(names, strengths) if strength > 0
    }
    hue = strengths[3]
    if hue > 0:
        factors["hue"] = ops.where(apply, keras.random.uniform((batch_size,), -hue, hue, seed=seed), 0.0)
    return factors


def compose_color_jitter(mean_pixels, brightness=None, contrast=None, saturation=None, hue=None):
    """(matrices (B, 3, 3), offsets (B, 1, 3)) with pixel @ M + offset == hue(sat(contrast(bright(pixel)))).

    Brightness, saturation and hue are linear; contrast blends with the mean luma of the image *as
    jittered so far*, which (luma being linear) is the current map applied to ``mean_pixels`` (B, 3).
    """
    matrices, offsets = identity_matrices(ops.shape(mean_pixels)[0]), ops.zeros_like(mean_pixels)[:, None, :]
    if brightness is not None:
        matrices, offsets = matrices * brightness[:, None, None], offsets * brightness[:, None, None]
    if contrast is not None:
        mean_luma = grayscale(ops.matmul(mean_pixels[:, None, :], matrices) + offsets)  # (B, 1, 1)
        factors = contrast[:, None, None]
        matrices, offsets = matrices * factors, offsets * factors + (1.0 - factors) * mean_luma
    if saturation is not None:
        matrices, offsets = followed_by(matrices, offsets, saturation_matrices(saturation))
    if hue is not None:
        matrices, offsets = followed_by(matrices, offsets, hue_rotation_matrices(hue))
    return matrices, offsets


def followed_by(matrices, offsets, linear_maps):
    """The affine colour map (matrices, offsets) followed by a linear one: p @ M @ L + t @ L."""
    return ops.matmul(matrices, linear_maps), ops.matmul(offsets, linear_maps)


def color_jitter(images, strengths, prob: float, seed):
    """torchvision ColorJitter inside RandomApply(p=prob), per image, as *one* affine colour map.

    The four steps compose exactly into ``pixel @ M + offset`` per image, applied in one pass and clipped
    once. torchvision clamps after each step; the two differ only where an intermediate step leaves
    [0, 1] (e.g. highlights pushed past white by brightness, then pulled back by contrast). One pass
    spares XLA a chain of channel-mixing steps it would otherwise re-compute: ~3x faster on CPU.
    The order is fixed, brightness -> contrast -> saturation -> hue (torchvision shuffles it per call).
    """
    factors = sample_jitter_factors(ops.shape(images)[0], strengths, prob, seed)
    matrices, offsets = compose_color_jitter(ops.mean(images, axis=(1, 2)), **factors)
    return ops.clip(apply_color_matrices(images, matrices) + offsets[:, None], 0.0, 1.0)


def random_grayscale(images, prob: float, seed):
    """Drop colour for a fraction of views, so colour alone can never identify an image."""
    apply = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=seed) < prob
    return ops.where(apply, ops.broadcast_to(grayscale(images), ops.shape(images)), images)


# ---------------------------------------------------------------------------------------------- blur


def blur_radius(sigma_max: float, size: int) -> int:
    """3 sigma covers 99.7% of the kernel; reflect padding needs radius < size."""
    return max(0, min(int(math.ceil(3.0 * sigma_max)), size - 1))


def gaussian_weights(sigmas, radius: int):
    """(B, 2r+1) normalised 1-D Gaussian taps, one kernel per image."""
    taps = ops.arange(-radius, radius + 1, dtype="float32")
    weights = ops.exp(-(taps[None, :] ** 2) / (2.0 * sigmas[:, None] ** 2))
    return weights / ops.sum(weights, axis=1, keepdims=True)


def reflect_index(indices, size: int):
    """torchvision's blur padding (d c b | a b c d | c b a): out-of-range indices mirror about the edge pixel."""
    indices = np.abs(indices)
    return np.where(indices > size - 1, 2 * (size - 1) - indices, indices)


def blur_matrices(weights, size: int):
    """(B, size, size) per-image convolution matrices along one axis, reflect boundaries included.

    A different kernel per image rules out depthwise convolution; as a matrix it is applied exactly like
    the crop, by one batched matmul per axis (at 32 px this beat a sum of 2r+1 shifted copies on CPU).
    """
    radius = (weights.shape[1] - 1) // 2
    positions = np.arange(size)
    taps = np.zeros((2 * radius + 1, size, size), "float32")  # static: tap k of output i reads input j
    for tap in range(2 * radius + 1):
        np.add.at(taps[tap], (positions, reflect_index(positions + tap - radius, size)), 1.0)
    return ops.einsum("bk,kij->bij", weights, ops.convert_to_tensor(taps))


def random_gaussian_blur(images, prob: float, sigma_range, seed):
    """Separable Gaussian blur with a per-image sigma (pixels); skipped images get a delta kernel."""
    batch_size = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    radius = blur_radius(sigma_range[1], min(height, width))
    if radius == 0:
        return images
    apply = keras.random.uniform((batch_size,), seed=seed) < prob
    sigmas = keras.random.uniform((batch_size,), sigma_range[0], sigma_range[1], seed=seed)
    delta = ops.cast(ops.arange(-radius, radius + 1) == 0, "float32")[None, :]
    weights = ops.where(apply[:, None], gaussian_weights(sigmas, radius), delta)
    return apply_axis_matrices(images, blur_matrices(weights, height), blur_matrices(weights, width))


# ---------------------------------------------------------------------------------------------- pipeline


def augment(images, config: AugmentConfig, seed):
    """One random view of each image. ``images``: float (B, H, W, 3) in [0, 1]; ``seed``: a SeedGenerator.

    Stages whose parameters make them no-ops are left out of the graph at trace time.
    """
    _check_images(images)
    images = ops.cast(images, "float32")
    if not geometry_is_identity(config):
        images = random_resized_crop(images, config, seed)
    if config.brightness > 0 or config.jitter > 0:
        images = random_color_affine(images, config.brightness, config.jitter, seed)
    if config.color_jitter_prob > 0 and any(strength > 0 for strength in config.color_jitter):
        images = color_jitter(images, config.color_jitter, config.color_jitter_prob, seed)
    if config.grayscale_prob > 0:
        images = random_grayscale(images, config.grayscale_prob, seed)
    if config.blur_prob > 0:
        images = random_gaussian_blur(images, config.blur_prob, config.blur_sigma, seed)
    return ops.clip(images, 0.0, 1.0)


def _check_images(images) -> None:
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(f"Augmenter expects (batch, height, width, 3) images with known height/width, got {shape}")


@keras.saving.register_keras_serializable(package="sslcore")
class Augmenter(keras.layers.Layer):
    """Random views of a batch of float images in [0, 1], (B, H, W, 3) -> same shape, float32.

    ``call(images, training=True)``; with ``training=False`` the images pass through unchanged, so an
    inference path can share the layer. One draw per image; the SeedGenerator state advances every call
    (and is a non-trainable variable, so ``stateless_call`` / ``model.fit`` thread it through XLA);
    two layers built with the same ``seed`` produce the same sequence of views.

    The layer always computes in float32, even under a ``mixed_bfloat16`` policy: bfloat16 keeps 8 bits
    of mantissa, too few for sub-pixel crop coordinates (at 224 px it cannot tell 200.5 from 201) and for
    summing blur taps and colour matrices, while this stage is a few elementwise passes over small
    tensors where bf16 buys no speed. The next layer casts the output to its own compute dtype.
    """

    def __init__(self, config: AugmentConfig | dict | str = DEFAULT_PRESET, seed: int | None = None, **kwargs):
        kwargs.pop("dtype", None)  # always float32, see above (from_config passes the saved policy back)
        super().__init__(dtype="float32", **kwargs)
        self.config = resolve_config(config)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        return augment(images, self.config, self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "config": self.config.to_dict(), "seed": self.seed}
