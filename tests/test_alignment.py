"""The crop check: an image correlates with crops of its original, however it was cropped, resized or re-lit."""
import numpy as np
import pytest
from PIL import Image

from sslcore import alignment, audit


def natural_like(seed, size=48):
    """Smooth random colour fields with some edges: a stand-in for photos, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    picture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    picture[rng.integers(0, size):, rng.integers(0, size):] *= 0.5   # a dark corner block
    return picture.clip(0, 255).astype(np.uint8)


def crop(picture, box):
    return np.asarray(Image.fromarray(picture).resize(picture.shape[:2][::-1], Image.Resampling.BICUBIC, box=box))


def test_area_matrix_averages_over_each_cell():
    weights = alignment.area_matrix(8, 4, 0.0, 8.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights @ np.arange(8, dtype=np.float32), [0.5, 2.5, 4.5, 6.5], atol=1e-5)
    # a cell straddling pixels weighs them by overlap
    np.testing.assert_allclose(alignment.area_matrix(4, 1, 0.5, 2.0), [[0.25, 0.5, 0.25, 0.0]], atol=1e-6)


@pytest.mark.parametrize("box", [(5, 3, 44, 42), (0, 0, 36, 36), (10, 8, 48, 46), (3, 6, 40, 43)])
def test_a_crop_anywhere_correlates_with_its_original(box):
    original = natural_like(0)
    score = alignment.crop_similarity(np.stack([original, crop(original, box)]), [[0, 1]])
    assert score[0] > 0.99, (box, score)


def test_either_order_mirror_and_relighting_and_unrelated_images():
    original = natural_like(1)
    edited = np.clip(crop(original, (6, 2, 44, 40))[:, ::-1] * 1.2, 0, 255).astype(np.uint8)   # cropped, mirrored, brighter
    others = [natural_like(seed) for seed in range(2, 8)]
    images = np.stack([original, edited, *others])
    scores = alignment.crop_similarity(images, [[0, 1], [1, 0]] + [[0, k] for k in range(2, 8)])
    assert scores[0] == pytest.approx(scores[1]) and scores[0] > 0.99
    assert scores[2:].max() < 0.97, scores


def test_the_crop_check_raises_a_cropped_copy_over_the_threshold_and_leaves_others():
    original = natural_like(3)
    images = np.stack([original, crop(original, (4, 4, 42, 42)), natural_like(9)])
    indices = np.array([[1, 2], [0, 2], [0, 1]])
    similarities = np.full((3, 2), 0.3, np.float32)   # what a briefly trained encoder might say
    raised = audit.with_crop_check(images, indices, similarities, checked=2)
    assert raised[0, 0] >= audit.DEFAULT_THRESHOLD and raised[1, 0] >= audit.DEFAULT_THRESHOLD
    assert raised[0, 1] == pytest.approx(0.3) and raised[2].max() == pytest.approx(0.3)
    assert audit.aligned_similarity(audit.ALIGNED_AT_THRESHOLD) == pytest.approx(audit.DEFAULT_THRESHOLD)
