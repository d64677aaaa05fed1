"""Image-quality checks (sslcore.quality): each issue injected into a folder of clean digits is ranked first by its
check and flagged, and no clean image is flagged. No run is needed: the checks look at pixels and file headers."""
import numpy as np
import pytest
from PIL import Image

from sslcore import quality
from sslcore.data import load_folder
from tests.corpus import QUALITY_DIGITS, make_quality_folder


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality") / "photos"
    root.mkdir()
    injected = make_quality_folder(root)
    folder = load_folder(root, 32, cache_dir=str(tmp_path_factory.mktemp("cache")))   # the audit's 32 px view
    scores = quality.quality_scores(folder.images, quality.original_sizes(str(root), folder.paths))
    return folder.paths, scores, injected


@pytest.mark.parametrize("check", quality.CHECKS)
def test_each_injected_issue_is_ranked_first_and_flagged_by_its_check(scored, check):
    paths, scores, injected = scored
    worst = paths[int(np.argmin(scores[check]))]
    assert worst == injected[check], (check, worst)
    assert scores[check][paths.index(worst)] < quality.THRESHOLDS[check]


def test_no_clean_image_is_flagged_and_the_list_is_worst_first(scored):
    paths, scores, injected = scored
    rows = quality.flagged(paths, scores)
    assert {path for path, _, _ in rows} == set(injected.values())
    assert {(path, check) for path, check, _ in rows} >= {(name, check) for check, name in injected.items()}
    assert len(paths) == QUALITY_DIGITS + len(quality.CHECKS)
    checks = [check for _, check, _ in rows]
    assert checks == sorted(checks, key=quality.CHECKS.index)          # check by check
    for check in quality.CHECKS:
        values = [score for _, c, score in rows if c == check]
        assert values == sorted(values)                                # worst (lowest) first


def test_grayscale_is_only_flagged_among_colour_images():
    rng = np.random.default_rng(0)
    gray = np.repeat(rng.integers(0, 256, (10, 16, 16, 1), dtype=np.uint8), 3, axis=-1)
    colour = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    mostly_gray = quality.quality_scores(np.concatenate([gray, colour[:3]]))["grayscale"]
    mostly_colour = quality.quality_scores(np.concatenate([gray[:3], colour]))["grayscale"]
    assert (mostly_gray == 1).all() and (mostly_colour[:3] == 0).all() and (mostly_colour[3:] > 0.1).all()


def test_sizes_are_the_files_own_as_displayed(tmp_path):
    Image.new("RGB", (40, 10)).save(tmp_path / "wide.png")
    turned = Image.new("RGB", (40, 10))
    exif = turned.getexif()
    exif[quality.EXIF_ORIENTATION] = 6          # shown after a quarter turn: 10 wide, 40 tall
    turned.save(tmp_path / "turned.jpg", exif=exif)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    sizes = quality.original_sizes(str(tmp_path), ["wide.png", "turned.jpg", "broken.png"])
    assert sizes.tolist() == [[40, 10], [10, 40], [0, 0]]


def test_odd_size_and_aspect_are_judged_against_the_folders_middle_half():
    areas = np.array([100, 100, 120, 150, 160, 20, 0], float)
    scores = quality.relative_to_middle_half(areas)
    low, high = np.percentile(areas[:6], [25, 75])
    assert scores[:5].tolist() == pytest.approx([min(1, a / low, high / a) for a in areas[:5]])
    assert scores[5] == pytest.approx(20 / low) and scores[6] == 1.0      # unknown size: nothing to judge


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="uint8 images of shape"):
        quality.quality_scores(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="at least 3 × 3"):
        quality.quality_scores(np.zeros((2, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="sizes has 1 rows for 2 images"):
        quality.quality_scores(np.zeros((2, 8, 8, 3), np.uint8), sizes=[[8, 8]])
    with pytest.raises(ValueError, match="Unknown quality check"):
        quality.flagged(["a"], {c: np.ones(1) for c in quality.CHECKS}, thresholds={"blury": 0.5})
