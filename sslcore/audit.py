"""Audit an image folder with a trained run: duplicates, near-duplicates, outliers, unreadable files and image-quality
issues (dark, light, blurry, low information, odd size or aspect ratio, grayscale: ``sslcore.quality``).

What users mean by a near-duplicate is the same picture after a crop, a resize, JPEG re-compression, a mirror
flip or a brightness change. Hashing pixels misses flips and crops; a self-supervised encoder was trained to
map exactly those edits of an image (its augmentations) to nearby embeddings, so the audit works in embedding
space, and checks the nearest candidates pixel for pixel against crops of each other, because crops are the last
edit a briefly trained encoder learns (docs/audit.md):

1. **Exact copies** are found first by content hash (SHA-256 of the file bytes), similarity 1.0.
2. **Near-duplicates** are pairs whose embeddings have cosine similarity ≥ ``threshold`` after whitening. The
   embedding is the run's, averaged over each image and its mirror image (``sslcore.export.embed``), so a
   flipped copy matches even when the encoder learnt flip invariance only roughly. Whitening (centre on the
   folder's mean, rescale each principal direction to unit variance, ``prepare``) is the standard move of
   copy detection: raw encoder features are ReLU outputs crowded into a narrow cone (unrelated CIFAR-10 images'
   nearest neighbours score 0.98), because a few directions, the ones that tell classes apart, carry most of
   the variance; whitened, the instance-specific directions count as much, nearest distinct images score ~0.65
   and a re-compressed, mirrored or brightened copy still scores ≥ 0.9 (docs/audit.md has the table).
   Each image's ``DUPLICATE_CANDIDATES`` nearest images, and its ``PIXEL_CANDIDATES`` nearest by a 4-pixel colour
   thumbnail of the whole image and of its centre (``pixel_neighbours``: whether a crop is among its original's
   nearest embeddings depends on the training recipe, issue 18; whether it is among its nearest thumbnails does
   not), are compared with crops of it and it with crops of them (``sslcore.alignment``); where the best
   crop-aligned colour correlation, put on the same scale by ``aligned_similarity``, is higher than the whitened
   similarity, it is the pair's similarity. A cropped copy that a briefly trained encoder places at 0.5–0.7 aligns
   with its original at 0.99 or more. Where the correlation is under ``PIXEL_AGREEMENT`` the pixel score is all the
   pair keeps: the embedding proposes near-duplicates, the pixels must second them.
3. **Outliers** are scored twice, by the mean cosine distance (1 − similarity) to their ``neighbors`` nearest other
   images: once on the encoder's output (unit features, not whitened: whitening would weigh the many
   low-variance directions, which carry per-image detail, as much as the few that carry what is typical of the
   folder), once on ``low_level_features`` (an early feature map, average-pooled). Each score is put in median
   absolute deviations from its median (``robust_z``) and the two are added. The encoder's output was trained to
   ignore colour and texture, so alone it placed random noise 6,072nd of 10,005 CIFAR-10 images and a checkerboard
   290th; with the low-level score they rank 175th and 4th (docs/audit.md). Images whose file is flagged for an odd
   size or aspect ratio (``GEOMETRY_CHECKS``), which decoding hides from both, come first (``with_geometry``).
   Most outlying first.
4. **Quality issues** (``sslcore.quality``): a score per image for each check, on the decoded images and the files'
   own sizes, flagged under the check's threshold; ``issues.csv``.

The neighbour search is scikit-learn's ``NearestNeighbors`` (brute force on unit vectors, through
``sslcore.evaluate.nearest_neighbors``): its k-nearest search runs in blocks of rows with a running top-k
(``ArgKmin``), multithreaded, so 50,000 images never make a 50,000 × 50,000 matrix; each image's
``DUPLICATE_CANDIDATES`` nearest neighbours and ``2 × PIXEL_CANDIDATES`` nearest thumbnails are the candidate
near-duplicates, so an image with more near-copies than that lists its closest ones (exact copies, found by hash,
are all listed).

Nothing in the folder is ever modified, moved or deleted. ``write_clean`` copies the folder elsewhere without
the flagged files (unreadable files, all but one file of each duplicate group, and optionally the top outliers).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sslcore import alignment, evaluate, quality
from sslcore.export import check_outside, embed_folder, load_encoder

# Whitened cosine similarity at or above which two images are near-duplicates. Calibrated on CIFAR-10 with a
# SimCLR convnet (docs/audit.md): 0.7% of unedited images have a neighbour that scores this high, while
# flipped, re-compressed and brightened copies score above it (98–100%); heavier edits score lower.
DEFAULT_THRESHOLD = 0.9
# Added to every variance before whitening, as a fraction of the mean variance: keeps directions the folder
# barely varies along (noise, or all of them when there are fewer images than dimensions) from being blown up.
WHITENING_SHRINK = 0.01
# Neighbours an outlier score averages over: enough that one lookalike cannot hide an outlier.
DEFAULT_NEIGHBORS = 10
# Nearest neighbours per image searched for near-duplicates.
DUPLICATE_CANDIDATES = 20
# Of those, the nearest ones also compared pixel by pixel against crops of each other (sslcore.alignment): an encoder
# trained briefly is not crop invariant, yet a cropped copy is usually among its original's nearest images.
CROP_CHECKED_CANDIDATES = 20
# Nearest images in pixel space (``pixel_neighbours``) added to the candidates, per image and per query (the whole
# image and its centre crop): whether a cropped copy is among its original's nearest embeddings depends on how
# crop-invariant the run's training made it; its tiny colour thumbnail does not. All of them get the crop check.
PIXEL_CANDIDATES = 10
# The crop-aligned pixel correlation that counts as much as a whitened similarity of DEFAULT_THRESHOLD: an exact
# crop correlates at 0.99–1.0, distinct lookalikes at up to 0.97 (docs/audit.md).
ALIGNED_AT_THRESHOLD = 0.98
# The crop-aligned pixel correlation under which a pair's embedding similarity does not count (``with_crop_check``):
# a briefly trained encoder can put two different pictures at 0.97 (a 5 and a 3 in the test corpus, run on the
# τ 0.05 / 512 recipe), so the embedding proposes and the pixels must second. Edited copies of ``EDITS`` correlate
# above it: on CIFAR-10 the lowest was 0.935 (JPEG q30; 1st percentile per edit ≥ 0.964; the 1.2% of crops whose
# luma search fails score -1 and were missed before too), in the test corpus ≥ 0.999. It sits under that with a
# margin, as high as the edits allow: distinct digits on plain paper correlate at up to 0.97, and the higher the bar,
# the fewer of them an embedding can report (docs/audit.md). Heavier edits than ``EDITS`` (rotations, grayscale)
# may fall under it and are then judged on their pixels alone.
PIXEL_AGREEMENT = 0.92
# The early feature map outliers are also judged on is the first at 1/LOW_LEVEL_REDUCTION of the input's side.
LOW_LEVEL_REDUCTION = 4

# File-geometry checks (``sslcore.quality``) whose flagged images head the outlier list: decoding scales every image to
# the run's square, so neither feature space sees an odd size or shape. On a folder of 250 cats and dogs with 10 small
# trucks blown up to an odd size, the two feature spaces ranked 1–2 of the 10 in the top 20 (docs/audit.md).
GEOMETRY_CHECKS = ("odd_size", "odd_aspect_ratio")

# The edits users mean by "near-duplicate"; the tests and benchmarks/audit_cifar.py measure the audit on them.
EDITS = ("crop", "resize", "jpeg", "flip", "brightness")


@dataclass
class DuplicatePair:
    a: str
    b: str
    similarity: float
    exact: bool


@dataclass
class AuditReport:
    root: str
    images: int
    threshold: float
    duplicates: list[DuplicatePair]         # exact copies first, then near-duplicates, most similar first
    candidates: list[DuplicatePair]         # every near pair the search found (any similarity), for re-thresholding
    outliers: list[tuple[str, float]]       # (path, score), most outlying first
    unreadable: list[tuple[str, str]]       # (path, reason)
    issues: list[tuple[str, str, float]] = field(default_factory=list)   # (path, check, score): sslcore.quality
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    clean_copy: dict[str, Any] | None = None

    @property
    def summary(self) -> dict[str, Any]:
        exact = sum(pair.exact for pair in self.duplicates)
        return {"folder": self.root, "images": self.images, "unreadable": len(self.unreadable),
                "exact_duplicates": exact, "near_duplicates": len(self.duplicates) - exact, "threshold": self.threshold,
                "top_outliers": [path for path, _ in self.outliers[:5]],
                "quality_issues": {check: sum(issue == check for _, issue, _ in self.issues) for check in quality.CHECKS},
                "files": self.files,
                "seconds": {k: round(v, 2) for k, v in self.timings.items()},
                **({"clean_copy": {k: v for k, v in self.clean_copy.items() if k != "left_out_files"}}
                   if self.clean_copy else {})}

    def pairs_above(self, threshold: float) -> list[DuplicatePair]:
        """Exact copies plus the near-duplicates at or above ``threshold`` (the app's slider)."""
        exact = [pair for pair in self.duplicates if pair.exact]
        return exact + [pair for pair in self.candidates if pair.similarity >= threshold]


# ---------------------------------------------------------------------------------------------- the steps


def prepare(features: np.ndarray, shrink: float = WHITENING_SHRINK) -> np.ndarray:
    """Whitened unit rows: scale to unit length, centre, rotate onto the principal directions, divide each by its
    (shrunk) standard deviation, scale to unit length again. The dot product of two rows is their whitened cosine.

    The first scaling keeps what raw cosine gets right: a brighter copy of an image gives roughly a multiple of
    its features (ReLU networks are nearly scale-equivariant), which only their length tells apart.
    """
    features = evaluate.normalize_rows(features)
    centred = features - features.mean(axis=0, dtype=np.float64).astype(np.float32)
    if len(centred) > 1:
        covariance = (centred.T @ centred).astype(np.float64) / (len(centred) - 1)
        variances, directions = np.linalg.eigh(covariance)
        variances = np.clip(variances, 0.0, None)
        scale = np.sqrt(variances + shrink * max(float(variances.mean()), 1e-12))
        centred = centred @ (directions / scale).astype(np.float32)
    return evaluate.normalize_rows(centred)


def neighbours(unit: np.ndarray, k: int, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most similar other rows (indices, cosine similarities), most similar first, self excluded.

    ``queries`` (default: ``unit`` itself) are other views of the same rows, searched among ``unit`` in their place.
    """
    n = len(unit)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    indices, similarities = evaluate.nearest_neighbors(unit, unit if queries is None else queries, k + 1)
    # The row itself is normally first, but an exact copy ties with it: drop it wherever it is, else the last.
    is_self = indices == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return indices[keep].reshape(n, k), similarities[keep].reshape(n, k).astype(np.float32)


def pixel_neighbours(thumbs: np.ndarray, k: int = PIXEL_CANDIDATES) -> np.ndarray:
    """(N, 2k) indices: each image's ``k`` nearest images by its tiny colour thumbnail (``alignment.pixel_descriptors``),
    then the ``k`` nearest to its centre crop. The crop query finds the image's cropped copies (whose whole picture
    is that crop); the whole one finds resized, re-compressed and re-lit copies, and originals of a crop."""
    whole = alignment.pixel_descriptors(thumbs)
    found = [neighbours(whole, k, queries)[0]
             for queries in (whole, alignment.pixel_descriptors(thumbs, alignment.PIXEL_CROP))]
    return np.concatenate(found, axis=1)


def pair_similarities(unit: np.ndarray, indices: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Cosine similarity of each row with each of its listed rows (N, k), a block of rows at a time (no N × k × d)."""
    similarities = np.empty(indices.shape, np.float32)
    for start in range(0, len(indices), chunk):
        rows = unit[start:start + chunk]
        similarities[start:start + chunk] = np.einsum("nd,nkd->nk", rows, unit[indices[start:start + chunk]])
    return similarities


def candidate_neighbours(unit: np.ndarray, thumbs: np.ndarray, *, embedding_k: int = DUPLICATE_CANDIDATES,
                         pixel_k: int = PIXEL_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Each image's candidate near-duplicates, (indices, whitened similarities): its ``embedding_k`` nearest in the
    whitened embedding ``unit``, then its ``pixel_neighbours`` (scored by the embedding too); a pair may repeat."""
    indices, similarities = neighbours(unit, embedding_k)
    if pixel_k < 1 or len(unit) < 2:
        return indices, similarities
    pixel = pixel_neighbours(thumbs, pixel_k)
    return (np.concatenate([indices, pixel], axis=1),
            np.concatenate([similarities, pair_similarities(unit, pixel)], axis=1))


def nearest_other(unit: np.ndarray) -> np.ndarray:
    """Index of each row's most similar other row."""
    return neighbours(unit, 1)[0][:, 0]


def file_digests(root: str, paths: list[str]) -> list[str]:
    digests = []
    for relative in paths:
        with open(os.path.join(root, relative), "rb") as handle:
            digests.append(hashlib.file_digest(handle, "sha256").hexdigest())
    return digests


def exact_duplicate_groups(digests: list[str]) -> list[list[int]]:
    """Indices of files with identical bytes, groups of two or more, each in path order."""
    groups: dict[str, list[int]] = {}
    for index, digest in enumerate(digests):
        groups.setdefault(digest, []).append(index)
    return [members for members in groups.values() if len(members) > 1]


def near_duplicate_candidates(indices: np.ndarray, similarities: np.ndarray, same_copy: np.ndarray,
                              floor: float) -> list[tuple[int, int, float]]:
    """Distinct pairs (i < j) from the neighbour lists with similarity ≥ ``floor``, most similar first.

    ``same_copy[i]`` is the exact-copy group of image i (or its own index), so pairs of identical files, already
    reported as exact copies, are not listed again.
    """
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    cols, sims = indices.ravel(), similarities.ravel()
    chosen = (sims >= floor) & (same_copy[rows] != same_copy[cols])
    first, second = np.minimum(rows, cols)[chosen], np.maximum(rows, cols)[chosen]
    pairs = {}
    for i, j, s in zip(first.tolist(), second.tolist(), sims[chosen].tolist()):
        pairs[(i, j)] = max(s, pairs.get((i, j), -1.0))
    return sorted(((i, j, s) for (i, j), s in pairs.items()), key=lambda pair: (-pair[2], pair[0], pair[1]))


def aligned_similarity(correlation: np.ndarray) -> np.ndarray:
    """A crop-aligned pixel correlation on the whitened-similarity scale: ALIGNED_AT_THRESHOLD maps to
    DEFAULT_THRESHOLD and 1 to 1, linearly, so one threshold (the app's slider) judges both kinds of evidence."""
    stretch = (1.0 - DEFAULT_THRESHOLD) / (1.0 - ALIGNED_AT_THRESHOLD)
    return (1.0 - (1.0 - np.asarray(correlation, np.float32)) * stretch).astype(np.float32)


def crop_correlations(images: np.ndarray, indices: np.ndarray, checked: int,
                      thumbs: np.ndarray | None = None) -> np.ndarray:
    """(N, checked): ``alignment.crop_similarity`` of each image with each of its first ``checked`` neighbours."""
    rows, cols = np.repeat(np.arange(len(indices)), checked), indices[:, :checked].ravel()
    # Each pair once, whichever image lists the other (the comparison goes both ways anyway).
    pairs, inverse = np.unique(np.stack([np.minimum(rows, cols), np.maximum(rows, cols)], axis=1), axis=0,
                               return_inverse=True)
    return alignment.crop_similarity(images, pairs, thumbs)[inverse.ravel()].reshape(len(indices), checked)


def with_crop_check(images: np.ndarray, indices: np.ndarray, similarities: np.ndarray,
                    checked: int = CROP_CHECKED_CANDIDATES, thumbs: np.ndarray | None = None,
                    agreement: float | None = None) -> np.ndarray:
    """Each neighbour's similarity, raised to its ``aligned_similarity`` where that is higher, for the first
    ``checked`` neighbours of every image: a crop, resize, re-compression or re-lighting of a picture aligns with
    it pixel for pixel even where the encoder places the two apart. ``thumbs``: the images' thumbnails, if made.

    With ``agreement`` (the audit passes ``PIXEL_AGREEMENT``), a checked pair whose crop-aligned correlation is under
    it keeps only its pixel evidence: the embedding alone cannot make two images near-duplicates."""
    checked = min(checked, indices.shape[1])
    if checked < 1:
        return similarities
    correlations = crop_correlations(images, indices, checked, thumbs)
    aligned = aligned_similarity(correlations)
    judged = np.maximum(similarities[:, :checked], aligned)
    if agreement is not None:
        judged = np.where(correlations >= agreement, judged, np.maximum(aligned, -1.0))
    raised = similarities.copy()
    raised[:, :checked] = judged
    return raised


def outlier_scores(similarities: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance to the ``k`` nearest other images (the lists are sorted, most similar first)."""
    return 1.0 - similarities[:, :k].mean(axis=1)


def robust_z(scores: np.ndarray) -> np.ndarray:
    """Scores in median absolute deviations from their median: puts two kinds of distance on one scale."""
    median = np.median(scores)
    return (scores - median) / max(float(np.median(np.abs(scores - median))), 1e-12)


def combined_outlier_scores(views: list[np.ndarray], k: int) -> np.ndarray:
    """Sum over feature spaces of each image's ``outlier_scores`` as a ``robust_z``: an image is an outlier when it
    is far from its neighbours in what it shows (the encoder's output) or in how it looks (``low_level_features``)."""
    return sum(robust_z(outlier_scores(neighbours(evaluate.normalize_rows(view), k)[1], k)) for view in views)


def with_geometry(scores: np.ndarray, quality_scores: dict[str, np.ndarray]) -> np.ndarray:
    """``scores`` with the images a ``GEOMETRY_CHECKS`` check flags lifted above every other image: such an image
    scores the highest unflagged score plus its oddness, the sum over the checks that flag it of
    1 + log2(threshold / its score) (a file 4 × smaller than the flag's limit adds 3), so the oddest comes first."""
    scores = np.asarray(scores, np.float64)
    oddness = np.zeros(len(scores))
    for check in GEOMETRY_CHECKS:
        values = np.asarray(quality_scores.get(check, np.ones(len(scores))), np.float64)
        limit = quality.THRESHOLDS[check]
        flagged = values < limit
        oddness[flagged] += 1.0 + np.log2(limit / np.maximum(values[flagged], 1e-6))
    flagged = oddness > 0
    if not flagged.any():
        return scores
    top = float(scores[~flagged].max()) if (~flagged).any() else 0.0
    lifted = scores.copy()
    lifted[flagged] = top + oddness[flagged]
    return lifted


# ---------------------------------------------------------------------------------------------- low-level statistics


def low_level_layer(network):
    """(model, layer) of the first rectified feature map at a quarter of the input's resolution or less.

    A self-supervised encoder's output is trained to ignore colour and texture (its augmentations jitter them), so
    blocky noise or a checkerboard lands among ordinary images there. Early feature maps still see colour and
    texture, and average-pooled they describe an image's look independently of where things are in it.
    """
    import keras

    size = network.input_shape[1]
    for layer in network.layers:
        if isinstance(layer, keras.Model):
            found = low_level_layer(layer)
            if found:
                return found
        shape = getattr(layer, "output", None) is not None and layer.output.shape
        rectified = getattr(getattr(layer, "activation", None), "__name__", "") == "relu" or layer.__class__.__name__ in ("ReLU", "Activation")
        if shape and len(shape) == 4 and rectified and shape[1] and shape[1] <= size / LOW_LEVEL_REDUCTION:
            return network, layer
    return None


def low_level_features(encoder, images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Average-pooled early feature map (``low_level_layer``) of uint8 images, averaged with their mirror images."""
    import keras

    inner, layer = low_level_layer(encoder)
    probe = keras.Model(inner.input, layer.output)
    # Layers the encoder applies before ``inner`` (the pixel rescaling) are applied first.
    before = [l for l in encoder.layers[1:encoder.layers.index(inner)]] if inner is not encoder else []
    parts = []
    for start in range(0, len(images), chunk):
        pooled = 0.0
        for batch in (images[start:start + chunk], images[start:start + chunk, :, ::-1]):
            x = np.ascontiguousarray(batch, dtype=np.float32)
            for step in before:
                x = keras.ops.convert_to_numpy(step(x))
            pooled = pooled + np.asarray(probe.predict(x, batch_size=256, verbose=0)).mean(axis=(1, 2)) / 2
        parts.append(pooled.astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, int(layer.output.shape[-1])), np.float32)


# ---------------------------------------------------------------------------------------------- one call


def audit_folder(run, data, out=None, *, threshold: float = DEFAULT_THRESHOLD, neighbors: int = DEFAULT_NEIGHBORS,
                 flip_average: bool = True, candidate_floor: float | None = None, write_clean=None,
                 drop_outliers: int = 0) -> AuditReport:
    """Audit the folder ``data`` (``folder:PATH`` or a path) with the run's encoder.

    Writes ``duplicates.csv``, ``outliers.csv``, ``unreadable.csv`` and ``issues.csv`` (``sslcore.quality``) into
    ``out`` when given (never inside the folder). ``candidate_floor`` (default: ``threshold``) keeps lower-similarity pairs in ``report.candidates`` so
    the app's slider can re-threshold without searching again. ``write_clean`` copies the folder there without the
    flagged files (see ``flagged_files``).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity between -1 and 1; got {threshold}")
    if neighbors < 1:
        raise ValueError(f"neighbors must be at least 1; got {neighbors}")
    if drop_outliers < 0:
        raise ValueError(f"drop_outliers must not be negative; got {drop_outliers}")
    floor = min(threshold, candidate_floor) if candidate_floor is not None else threshold
    embedded = embed_folder(run, data, flip_average=flip_average)
    root, paths = embedded.root, embedded.paths
    for target, what in ((out, "the audit report"), (write_clean, "the clean copy")):
        if target is not None:
            check_outside(root, target, what=what)
    if write_clean is not None:
        _check_clean_target(write_clean)
    timings = dict(embedded.seconds)

    started = time.perf_counter()
    groups = exact_duplicate_groups(file_digests(root, paths))
    same_copy = np.arange(len(paths))
    exact = []
    for members in groups:
        same_copy[members] = members[0]
        exact += [DuplicatePair(paths[members[0]], paths[other], 1.0, True) for other in members[1:]]
    timings["hash"] = time.perf_counter() - started

    started = time.perf_counter()
    images = embedded.folder.images
    thumbs = alignment.thumbnails(images)
    indices, similarities = candidate_neighbours(prepare(embedded.features), thumbs)
    timings["duplicate_search"] = time.perf_counter() - started
    started = time.perf_counter()
    similarities = with_crop_check(images, indices, similarities, checked=indices.shape[1], thumbs=thumbs,
                                   agreement=PIXEL_AGREEMENT)
    timings["crop_check"] = time.perf_counter() - started
    started = time.perf_counter()
    candidates = [DuplicatePair(paths[i], paths[j], round(s, 6), False)
                  for i, j, s in near_duplicate_candidates(indices, similarities, same_copy, floor)]
    timings["duplicate_search"] += time.perf_counter() - started
    started = time.perf_counter()
    low_level = low_level_features(load_encoder(run), embedded.folder.images)
    timings["low_level_embed"] = time.perf_counter() - started
    started = time.perf_counter()
    quality_scores = quality.quality_scores(images, quality.original_sizes(root, paths))
    issues = quality.flagged(paths, quality_scores)
    timings["quality"] = time.perf_counter() - started
    started = time.perf_counter()
    scores = with_geometry(combined_outlier_scores([embedded.features, low_level], neighbors), quality_scores)
    timings["outlier_search"] = time.perf_counter() - started
    order = np.argsort(-scores, kind="stable")
    report = AuditReport(
        root=root, images=len(paths), threshold=float(threshold),
        duplicates=exact + [pair for pair in candidates if pair.similarity >= threshold], candidates=candidates,
        outliers=[(paths[i], float(scores[i])) for i in order], unreadable=list(embedded.skipped), issues=issues,
        timings=timings)
    if out is not None:
        report.files = write_report(report, out)
    if write_clean is not None:
        report.clean_copy = write_clean_copy(report, write_clean, drop_outliers=drop_outliers)
        if out is not None:
            report.files["left_out"] = _write_rows(Path(out) / "left_out.csv", ["path", "reason"],
                                                   [(row["path"], row["reason"]) for row in report.clean_copy["left_out_files"]])
    return report


def write_report(report: AuditReport, out, threshold: float | None = None) -> dict[str, str]:
    """duplicates.csv (a,b,similarity), outliers.csv (path,score), unreadable.csv (path,reason) and issues.csv
    (path,issue,score: the quality checks' flags, check by check, worst first) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = report.duplicates if threshold is None else report.pairs_above(threshold)
    tables = {
        "duplicates": (["a", "b", "similarity"], [(p.a, p.b, f"{p.similarity:.4f}") for p in pairs]),
        "outliers": (["path", "score"], [(path, f"{score:.4f}") for path, score in report.outliers]),
        "unreadable": (["path", "reason"], report.unreadable),
        "issues": (["path", "issue", "score"], [(path, issue, f"{score:.4f}") for path, issue, score in report.issues]),
    }
    return {name: _write_rows(out / f"{name}.csv", header, rows) for name, (header, rows) in tables.items()}


def _write_rows(path: Path, header: list[str], rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


# ---------------------------------------------------------------------------------------------- a clean copy


def flagged_files(report: AuditReport, drop_outliers: int = 0) -> dict[str, str]:
    """Relative path → why it is left out of a clean copy.

    Unreadable files; from each group of duplicates (linked by exact or near pairs) every file but one, keeping
    the largest file (most likely the original: uncropped, least compressed), first by path on a tie; and the
    ``drop_outliers`` most outlying images.
    """
    flagged = {path: f"unreadable: {reason}" for path, reason in report.unreadable}
    parent: dict[str, str] = {}

    def find(path: str) -> str:
        while parent.setdefault(path, path) != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for pair in report.duplicates:
        parent[find(pair.b)] = find(pair.a)
    groups: dict[str, list[str]] = {}
    for path in list(parent):
        groups.setdefault(find(path), []).append(path)
    for members in groups.values():
        members.sort(key=lambda path: (-os.path.getsize(os.path.join(report.root, path)), path))
        for path in members[1:]:
            flagged[path] = f"duplicate of {members[0]}"
    for path, score in report.outliers[:drop_outliers]:
        flagged.setdefault(path, f"outlier (score {score:.3f})")
    return flagged


def _check_clean_target(target) -> None:
    target = Path(os.path.expanduser(os.fspath(target)))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"Refusing to write the clean copy to {target}: it exists and is not an empty folder. "
                         "Give a new folder.")


def write_clean_copy(report: AuditReport, target, *, drop_outliers: int = 0) -> dict[str, Any]:
    """Copy every file of the folder (images and anything else) to ``target`` except the flagged ones."""
    check_outside(report.root, target, what="the clean copy")
    _check_clean_target(target)
    flagged = flagged_files(report, drop_outliers)
    target = Path(os.path.expanduser(os.fspath(target)))
    copied = 0
    for directory, subdirs, names in os.walk(report.root):
        subdirs.sort()
        relative_dir = os.path.relpath(directory, report.root)
        for name in sorted(names):
            relative = os.path.normpath(os.path.join(relative_dir, name)).replace(os.sep, "/")
            if relative in flagged:
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(directory, name), destination)
            copied += 1
    target.mkdir(parents=True, exist_ok=True)
    return {"folder": str(target), "copied": copied, "left_out": len(flagged),
            "left_out_files": [{"path": path, "reason": reason} for path, reason in sorted(flagged.items())]}

# ---------------------------------------------------------------------------------------------- edits


def apply_edit(image: np.ndarray, edit: str, seed: int = 0) -> np.ndarray:
    """``image`` (uint8, H × W × 3) after one of ``EDITS``, at the same size: how near-duplicates arise."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    width, height = picture.size
    if edit == "crop":  # keep 80% of each side, at a random offset, scaled back up
        side_w, side_h = round(width * 0.8), round(height * 0.8)
        left, top = int(rng.integers(0, width - side_w + 1)), int(rng.integers(0, height - side_h + 1))
        picture = picture.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + side_w, top + side_h))
    elif edit == "resize":  # down to 60% and back: the detail a thumbnail loses
        small = picture.resize((max(1, round(width * 0.6)), max(1, round(height * 0.6))), Image.Resampling.BILINEAR)
        picture = small.resize((width, height), Image.Resampling.BICUBIC)
    elif edit == "jpeg":
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=30)
        picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    elif edit == "flip":
        picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif edit == "brightness":  # 25% brighter or darker
        factor = 1.25 if rng.random() < 0.5 else 0.75
        return np.clip(np.asarray(picture, dtype=np.float32) * factor, 0, 255).round().astype(np.uint8)
    else:
        raise ValueError(f"Unknown edit {edit!r}; choose one of {', '.join(EDITS)}")
    return np.asarray(picture, dtype=np.uint8)
