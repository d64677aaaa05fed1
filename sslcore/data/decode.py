"""Decoding one image: a path, bytes, file object or Pillow image -> uint8 RGB (S, S, 3).

Every Pillow mode becomes 8-bit RGB, EXIF orientation is applied, and the image is centre-cropped
to a square before resizing. Folders, uploads and tfds arrays all go through these same rules.
A change to what pixels a file turns into must bump `sslcore.data.cache.CACHE_FORMAT_VERSION`.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sslcore.data.dataset import DataError, _check_image_size

# Alpha is composited onto white rather than dropped: pixels under full transparency often hold
# black or leftover colour that was never meant to be seen, and white is how the image looks
# on a page.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA", "P"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


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
        return "empty data (0 bytes)"
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source) and os.path.getsize(source) == 0:
        return "empty file (0 bytes)"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file Pillow can read (wrong extension, or not an image at all)"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not an image file"
    return f"corrupt or truncated image data ({type(error).__name__}: {error})"


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
