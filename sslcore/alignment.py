"""Crop-tolerant pixel comparison of candidate near-duplicate pairs: is one image a crop of the other?

An encoder trained for a few epochs maps an 80 % crop of a small image somewhere else than the image itself
(docs/audit.md), yet the copy is still among its original's nearest images. So the audit verifies each candidate
pair the way copy detection verifies a match geometrically: it compares each image with many crops of the other
(scales 1.0 down to 0.7, at positions on a grid), both ways, in luma; where that finds a good match it refines the
best crop box on finer grids, in colour, and keeps the best normalised correlation.

Everything is linear algebra on small thumbnails: an image becomes a ``THUMB``-pixel square by area averaging,
and every crop box is a pair of area-resampling matrices (rows, columns) that turn it into a ``VIEW``-pixel
square, so the views of many images are two batched matrix products. Views are centred and scaled to unit length
over all three colour channels together, so a brighter or darker copy correlates as well as an exact one while
two images of the same shape in other colours do not.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

THUMB = 32   # side of the thumbnail every image is first reduced to
VIEW = 16    # side of each compared view
# (crop scale, positions per axis) of the first search: positions 0.05 of the side apart, scales 0.1 apart.
CROP_GRID = ((1.0, 1), (0.9, 3), (0.8, 5), (0.7, 7))
# The second search, in colour, around the best box of the first: each round tries the scale and offsets moved by
# -step, 0 and +step (fractions of the side) and re-centres on the best.
REFINE_ROUNDS = (0.03, 0.015, 0.0075)
# Only pairs whose first (luma) search reached this are refined and scored; the rest score -1, far from any copy.
REFINE_FROM = 0.9
MIN_SCALE = 0.6
# Pixel-space neighbours (``pixel_descriptors``): each image as a PIXEL_SIDE-pixel colour square, whole and its
# centre PIXEL_CROP of the side. Measured on 10,000 CIFAR-10 images with 1,000 80% crops (docs/audit.md): 4 px in
# colour found more crops among the 10 nearest than 6, 8, 12 or 16 px, colour or luma (coarser forgives the shift).
PIXEL_SIDE = 4
PIXEL_CROP = 0.8
BLOCK = 128       # images whose first-search views are held at once (BLOCK × boxes × VIEW² floats: 11 MB)
PAIR_CHUNK = 64   # pairs scored or refined at once


def area_matrix(source: int, target: int, start, length) -> np.ndarray:
    """Weights that average ``source`` pixels over ``target`` equal cells of [start, start + length): (target, source),
    or (…, target, source) for arrays of starts and lengths."""
    start, length = np.asarray(start, np.float32)[..., None], np.asarray(length, np.float32)[..., None]
    edges = start + length * (np.arange(target + 1, dtype=np.float32) / target)          # (…, target + 1)
    low, high = edges[..., :-1, None], edges[..., 1:, None]
    pixels = np.arange(source, dtype=np.float32)
    overlap = np.minimum(high, pixels + 1) - np.maximum(low, pixels)
    np.maximum(overlap, 0.0, out=overlap)
    return overlap / overlap.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=None)
def crop_boxes() -> np.ndarray:
    """(boxes, 3): every (scale, left, top) of ``CROP_GRID`` as fractions of the side; the whole image first."""
    boxes = []
    for scale, positions in CROP_GRID:
        offsets = np.linspace(0.0, 1.0 - scale, positions) if positions > 1 else [0.0]
        boxes += [(scale, left, top) for top in offsets for left in offsets]
    return np.array(boxes, np.float64)


def resamplers(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) resampling matrices for (…, 3) boxes of (scale, left, top): (…, VIEW, THUMB) each."""
    boxes = np.asarray(boxes, np.float64)
    scale, left, top = boxes[..., 0] * THUMB, boxes[..., 1] * THUMB, boxes[..., 2] * THUMB
    return area_matrix(THUMB, VIEW, top, scale), area_matrix(THUMB, VIEW, left, scale)


def thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) images as float32 (N, THUMB, THUMB, 3) area-averaged thumbnails."""
    images = np.asarray(images)
    rows = area_matrix(images.shape[1], THUMB, 0.0, images.shape[1])
    columns = area_matrix(images.shape[2], THUMB, 0.0, images.shape[2])
    thumbs = np.empty((len(images), THUMB, THUMB, 3), np.float32)
    for start in range(0, len(images), 4096):   # in parts: a float copy of every image at once would be the peak
        part = images[start:start + 4096].astype(np.float32)
        thumbs[start:start + 4096] = np.einsum("yh,nhwc,xw->nyxc", rows, part, columns, optimize=True)
    return thumbs


def pixel_descriptors(thumbs: np.ndarray, crop: float = 1.0) -> np.ndarray:
    """(N, PIXEL_SIDE² · 3) unit vectors: the centre ``crop`` of each (N, THUMB, THUMB, 3) thumbnail, area-averaged to
    a PIXEL_SIDE-pixel colour square, centred and scaled to unit length (so a brighter copy matches as well)."""
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop is a fraction of the side in (0, 1]; got {crop}")
    side = THUMB * crop
    weights = area_matrix(THUMB, PIXEL_SIDE, (THUMB - side) / 2, side)
    small = np.einsum("yh,nhwc,xw->nyxc", weights, np.asarray(thumbs, np.float32), weights, optimize=True)
    return _unit(small)


def _unit(views: np.ndarray) -> np.ndarray:
    flat = views.reshape(*views.shape[:-3], -1)
    flat = flat - flat.mean(axis=-1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-6)


def gray(thumbs: np.ndarray) -> np.ndarray:
    """(N, T, T, 1) luma of (N, T, T, 3) thumbnails: the first search locates the crop box on it, a third of the work."""
    return (thumbs @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]


def crop_views(thumbs: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(N, boxes, VIEW² · C) unit views of (N, T, T, C) thumbnails, for resampling matrices shared by all of them
    (boxes, VIEW, THUMB)."""
    n, channels, boxes = len(thumbs), thumbs.shape[-1], len(rows)
    # One product for every box's rows: (B·V, T) @ (T, N·T·C), then one batched product per box for its columns.
    tall = rows.reshape(boxes * VIEW, THUMB) @ thumbs.transpose(1, 0, 2, 3).reshape(THUMB, -1)
    tall = tall.reshape(boxes, VIEW * n, THUMB, channels)
    if channels > 1:
        tall = tall.transpose(0, 1, 3, 2)
    views = np.matmul(tall.reshape(boxes, -1, THUMB), columns.transpose(0, 2, 1))
    views = views.reshape(boxes, VIEW, n, channels, VIEW).transpose(2, 0, 1, 4, 3)   # (N, B, V, V, C)
    return _unit(views)


def pair_views(thumbs: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(N, boxes, VIEW² · C) unit views, with resampling matrices of their own per thumbnail (N, boxes, VIEW, THUMB)."""
    n, boxes = rows.shape[:2]
    channels = thumbs.shape[-1]
    tall = np.matmul(rows, thumbs.reshape(n, 1, THUMB, THUMB * channels)).reshape(n, boxes, VIEW, THUMB, channels)
    tall = tall.transpose(0, 1, 2, 4, 3).reshape(n, boxes, VIEW * channels, THUMB)
    views = np.matmul(tall, columns.transpose(0, 1, 3, 2)).reshape(n, boxes, VIEW, channels, VIEW)
    return _unit(views.transpose(0, 1, 2, 4, 3))


def whole_views(thumbs: np.ndarray) -> np.ndarray:
    """(N, 2, VIEW² · C): each whole image and its mirror image, as unit views."""
    rows, columns = resamplers(np.array([[1.0, 0.0, 0.0]]))
    whole = np.einsum("vt,ntsc,us->nvuc", rows[0], thumbs, columns[0], optimize=True)
    return _unit(np.stack([whole, whole[:, :, ::-1]], axis=1))


def _first_search(thumbs, cropped, target) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation of the whole ``thumbs[target]`` with the ``crop_boxes`` of ``thumbs[cropped]``, and that box."""
    boxes = crop_boxes()
    rows, columns = resamplers(boxes)
    whole = whole_views(thumbs)
    best, where = np.full(len(cropped), -1.0, np.float32), np.zeros(len(cropped), np.int64)
    order = np.argsort(cropped, kind="stable")
    bounds = np.searchsorted(cropped[order], np.arange(len(thumbs) + 1))   # image i's pairs: order[bounds[i]:bounds[i+1]]
    for start in range(0, len(thumbs), BLOCK):
        stop = min(start + BLOCK, len(thumbs))
        if bounds[start] == bounds[stop]:
            continue
        views = crop_views(thumbs[start:stop], rows, columns)                               # (b, boxes, D)
        for image in range(start, stop):
            chosen = order[bounds[image]:bounds[image + 1]]
            if len(chosen):
                # (boxes, D) @ (D, pairs · 2): every crop of this image against each partner and its mirror image
                scores = (views[image - start] @ whole[target[chosen]].reshape(-1, whole.shape[-1]).T)
                scores = scores.reshape(len(boxes), len(chosen), 2).max(axis=2)
                best[chosen], where[chosen] = scores.max(axis=0), scores.argmax(axis=0)
    return best, boxes[where]


def _refine(thumbs, cropped, target, around: np.ndarray) -> np.ndarray:
    """Best colour correlation over boxes near each pair's box ``around`` (P, 3): ``REFINE_ROUNDS`` rounds, each on
    a 3 × 3 × 3 grid (scale, left, top) around the best box so far, the grid halving each round."""
    best = np.full(len(cropped), -1.0, np.float32)
    around = np.array(around, np.float64)
    grid = np.array(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)))                  # (27, 3)
    for part in range(0, len(cropped), PAIR_CHUNK):
        chunk = slice(part, part + PAIR_CHUNK)
        centre, whole = around[chunk], whole_views(thumbs[target[chunk]])   # per chunk: memory stays bounded
        for step in REFINE_ROUNDS:
            boxes = centre[:, None, :] + step * grid[None]
            boxes[..., 0] = np.clip(boxes[..., 0], MIN_SCALE, 1.0)
            boxes[..., 1:] = np.clip(boxes[..., 1:], 0.0, 1.0 - boxes[..., :1])
            views = pair_views(thumbs[cropped[chunk]], *resamplers(boxes))
            scores = np.matmul(views, whole.transpose(0, 2, 1)).max(axis=2)                 # (P, 27)
            centre = boxes[np.arange(len(scores)), scores.argmax(axis=1)]
            best[chunk] = np.maximum(best[chunk], scores.max(axis=1))
    return best


def crop_similarity(images: np.ndarray, pairs: np.ndarray, thumbs: np.ndarray | None = None) -> np.ndarray:
    """For each pair (i, j) of ``images``: the best colour correlation of either image (or its mirror image) with a
    crop of the other; near 1 when one is a crop, a resize, a re-compression or a re-lighting of the other, and -1
    for pairs whose luma match stayed under ``REFINE_FROM`` (no copy). ``thumbs``: the images' ``thumbnails``, when
    the caller already has them."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs):
        return np.zeros(0, np.float32)
    thumbs = thumbnails(images) if thumbs is None else thumbs
    # Both ways: the second image against crops of the first, and the first against crops of the second.
    cropped, target = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    score, box = _first_search(gray(thumbs), cropped, target)
    halves = len(pairs)
    # Refined: the way round that matched better, for pairs whose luma matched well enough to be a copy at all.
    better = np.where(score[:halves] >= score[halves:], np.arange(halves), np.arange(halves) + halves)
    again = better[score[better] >= REFINE_FROM]
    best = np.full(halves, -1.0, np.float32)
    if len(again):
        best[again % halves] = _refine(thumbs, cropped[again], target[again], box[again])
    return best
