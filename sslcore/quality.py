"""Image-quality checks of a folder: dark, light, blurry, low-information, odd size, odd aspect ratio, grayscale.

Each check gives every image a score in [0, 1], **lower is worse**, and flags it below the check's threshold
(``THRESHOLDS``; docs/audit.md has each check's false-alarm rate on clean CIFAR-10 and digits). Pixel checks look at
the images as the audit decoded them (the run's image size, centre-cropped square), because that is what training
sees; size and aspect ratio come from the files' headers (``original_sizes``), since decoding made every image the same.

Blur, size and aspect ratio are judged against the folder itself: how sharp an 8 px digit blown up to 32 px can be,
or which size is normal, depends on the folder, so "odd" means unlike most of its images. Brightness, information
and colour are absolute, except that grayscale is only flagged in a folder of mostly colour images.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

CHECKS = ("dark", "light", "blurry", "low_information", "odd_size", "odd_aspect_ratio", "grayscale")
# Flagged below these scores. Chosen on clean CIFAR-10 and digits so that (almost) nothing clean is flagged while an
# image darkened, lightened or blurred as described in docs/audit.md is.
THRESHOLDS = {
    "dark": 0.25,              # the brightest 5% of its pixels are darker than 25% grey
    "light": 0.25,             # the darkest 5% of its pixels are lighter than 75% grey
    "blurry": 0.4,             # under 40% of the folder's median sharpness
    "low_information": 0.3,    # its brightness histogram holds under 30% of the 6 bits 64 levels can
    "odd_size": 0.25,          # 4 × fewer pixels than a quarter of the folder's images, or 4 × more than 3/4 of them
    "odd_aspect_ratio": 0.5,   # twice as wide (or tall) relative to its height as the folder's middle half
    "grayscale": 0.01,         # colour channels differ by under 1% on average
}
DESCRIPTIONS = {
    "dark": "brightness the brightest 5% of pixels reach (95th percentile of luma)",
    "light": "1 − brightness of the darkest 5% of pixels (5th percentile of luma)",
    "blurry": "fine detail (Laplacian energy / gradient energy of luma), as a share of the folder's median",
    "low_information": "entropy of the 64-level luma histogram, as a share of its 6-bit maximum",
    "odd_size": "pixel count relative to the folder's middle half (1 inside it)",
    "odd_aspect_ratio": "width/height relative to the folder's middle half (1 inside it)",
    "grayscale": "mean spread between colour channels, as a share of 255",
}
# Grayscale is only an issue among colour images: a folder that is mostly grayscale has nothing to flag.
COLOUR_MAJORITY = 0.5
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
HISTOGRAM_LEVELS = 64
CHUNK = 1024    # images whose float copies are held at once
EXIF_ORIENTATION = 0x0112


def original_sizes(root: str, paths: list[str]) -> np.ndarray:
    """(N, 2) width and height of each file as displayed, from its header alone (no decoding); EXIF orientations
    5–8 (a quarter turn) swap them, as decoding does. A file whose header cannot be read gets (0, 0)."""
    sizes = np.zeros((len(paths), 2), np.int64)
    for index, relative in enumerate(paths):
        try:
            with Image.open(os.path.join(root, relative)) as image:
                width, height = image.size
                if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width
        except Exception:  # unreadable headers were already reported by decoding; the size checks skip them
            continue
        sizes[index] = width, height
    return sizes


def pixel_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: 5th and 95th percentile of luma (0–1), histogram entropy share, colour spread, and sharpness
    (mean squared Laplacian / mean squared gradient of luma: blurring removes the finest detail first, so the ratio
    falls; both grow with contrast alike, so it does not). NaN sharpness for a flat image, which has no detail."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"quality checks take uint8 images of shape (N, H, W, 3); got {images.dtype} {images.shape}")
    if min(images.shape[1:3]) < 3:
        raise ValueError(f"quality checks need images of at least 3 × 3 pixels; got {images.shape[1:3]}")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("p5", "p95", "entropy", "colour", "sharpness")}
    for start in range(0, len(images), CHUNK):
        rgb = images[start:start + CHUNK].astype(np.float32)
        luma = rgb @ LUMA
        flat = luma.reshape(len(luma), -1)
        low, high = np.percentile(flat, [5, 95], axis=1) / 255.0
        parts["p5"].append(low)
        parts["p95"].append(high)
        parts["entropy"].append(_histogram_entropy(flat))
        parts["colour"].append((rgb.max(axis=-1) - rgb.min(axis=-1)).mean(axis=(1, 2)) / 255.0)
        centre = luma[:, 1:-1, 1:-1]
        laplacian = 4 * centre - luma[:, :-2, 1:-1] - luma[:, 2:, 1:-1] - luma[:, 1:-1, :-2] - luma[:, 1:-1, 2:]
        gradient = (luma[:, 1:-1, 2:] - luma[:, 1:-1, :-2]) ** 2 + (luma[:, 2:, 1:-1] - luma[:, :-2, 1:-1]) ** 2
        detail, edges = (laplacian ** 2).mean(axis=(1, 2)), gradient.mean(axis=(1, 2))
        # Under a grey level of gradient on average there is nothing to be sharp about: low information, not blur.
        parts["sharpness"].append(np.where(edges > 1.0, detail / np.maximum(edges, 1e-6), np.nan))
    return {name: np.concatenate(values) if values else np.zeros(0, np.float32) for name, values in parts.items()}


def _histogram_entropy(flat: np.ndarray) -> np.ndarray:
    levels = np.clip((flat * (HISTOGRAM_LEVELS / 256.0)).astype(np.int64), 0, HISTOGRAM_LEVELS - 1)
    offsets = np.arange(len(flat))[:, None] * HISTOGRAM_LEVELS
    counts = np.bincount((levels + offsets).ravel(), minlength=len(flat) * HISTOGRAM_LEVELS)
    share = counts.reshape(len(flat), HISTOGRAM_LEVELS) / flat.shape[1]
    bits = -(share * np.log2(np.where(share > 0, share, 1.0))).sum(axis=1)
    return bits / np.log2(HISTOGRAM_LEVELS)


def relative_to_middle_half(values: np.ndarray) -> np.ndarray:
    """1 for values inside the folder's interquartile range, else the ratio to the nearer quartile (below 1): how
    many times smaller than a quarter of the folder, or larger than three quarters. Zeros (unknown) score 1."""
    values = np.asarray(values, np.float64)
    known = values > 0
    if not known.any():
        return np.ones(len(values), np.float32)
    low, high = np.percentile(values[known], [25, 75])
    safe = np.where(known, values, 1.0)
    return np.where(known, np.minimum(1.0, np.minimum(safe / low, high / safe)), 1.0).astype(np.float32)


def quality_scores(images: np.ndarray, sizes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each check's score per image, in [0, 1], lower is worse. ``sizes`` (N, 2): the files' own widths and heights
    (``original_sizes``); without them the size and aspect-ratio checks score 1 (nothing to judge)."""
    stats = pixel_statistics(images)
    n = len(stats["p5"])
    sharpness = stats["sharpness"]
    typical = float(np.nanmedian(sharpness)) if np.isfinite(sharpness).any() else 1.0
    colourful = float(np.mean(stats["colour"] >= THRESHOLDS["grayscale"])) if n else 1.0
    scores = {
        "dark": stats["p95"],
        "light": 1.0 - stats["p5"],
        "blurry": np.where(np.isfinite(sharpness), np.minimum(1.0, sharpness / max(typical, 1e-6)), 1.0),
        "low_information": stats["entropy"],
        "odd_size": np.ones(n),
        "odd_aspect_ratio": np.ones(n),
        "grayscale": np.minimum(1.0, stats["colour"]) if colourful > COLOUR_MAJORITY else np.ones(n),
    }
    if sizes is not None:
        sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
        if len(sizes) != n:
            raise ValueError(f"sizes has {len(sizes)} rows for {n} images")
        known = (sizes > 0).all(axis=1)
        scores["odd_size"] = relative_to_middle_half(np.where(known, sizes[:, 0] * sizes[:, 1], 0.0))
        scores["odd_aspect_ratio"] = relative_to_middle_half(np.where(known, sizes[:, 0] / np.maximum(sizes[:, 1], 1), 0.0))
    return {name: np.clip(np.asarray(scores[name], np.float32), 0.0, 1.0) for name in CHECKS}


def flagged(paths: list[str], scores: dict[str, np.ndarray],
            thresholds: dict[str, float] | None = None) -> list[tuple[str, str, float]]:
    """(path, check, score) of every image below a check's threshold: check by check in ``CHECKS`` order, worst
    (lowest score) first within each."""
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    unknown = set(thresholds) - set(CHECKS)
    if unknown:
        raise ValueError(f"Unknown quality check(s) {', '.join(sorted(unknown))}; the checks are {', '.join(CHECKS)}")
    rows = []
    for name in CHECKS:
        values = scores[name]
        for index in np.argsort(values, kind="stable"):
            if values[index] >= thresholds[name]:
                break
            rows.append((paths[index], name, float(values[index])))
    return rows
