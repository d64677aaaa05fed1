"""sslcore.explore, sslcore.preview and sslcore.finetune on a tiny digits run trained once for the module."""
import base64
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

import sslcore  # noqa: F401  (chooses the Keras backend before keras is imported)
import keras

from sslcore import explore, finetune, preview
from sslcore.augment import PRESETS, AugmentConfig
from sslcore.config import TrainConfig
from sslcore.runs import RunDir

from tests.helpers import TINY_RUN

pytestmark = pytest.mark.slow   # reads the session's shared tiny run (tests/conftest.py)


@pytest.fixture(scope="module")
def run_path(tmp_path_factory, tiny_run):
    """A copy of the session's shared run (fine-tuning writes its result into the run folder)."""
    import shutil

    path = tmp_path_factory.mktemp("runs") / "tiny"
    shutil.copytree(tiny_run, path)
    return path


@pytest.fixture(scope="module")
def embeddings(run_path):
    return explore.load_run(run_path)


def png_bytes(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- explore


def test_a_run_is_embedded_with_its_own_split(embeddings, run_path):
    width = TINY_RUN["encoder_width"]
    assert embeddings.bank_features.shape == (len(embeddings.bank_images), width)
    assert embeddings.query_features.shape == (len(embeddings.query_images), width)
    assert len(embeddings.query_images) == 359 and embeddings.class_names[:3] == ["0", "1", "2"]
    assert explore.load_run(run_path) is embeddings, "a second look at the same run reuses its features"


def test_knn_report_matches_what_the_trainer_measured(embeddings, run_path):
    report = explore.knn_report(embeddings)
    assert report["matrix"].sum() == len(embeddings.query_images)
    assert report["accuracy"] == pytest.approx(RunDir(run_path).epochs()[-1]["knn_accuracy"], abs=0.01)


def test_tsne_view_gives_points_indices_and_decodable_thumbnails(embeddings):
    view = explore.tsne_view(embeddings, max_points=100)
    assert view["points"].shape == (100, 2) and len(view["indices"]) == len(view["thumbnails"]) == 100
    header, data = view["thumbnails"][0].split(",", 1)
    assert header == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (32, 32)
    assert explore.tsne_view(embeddings, max_points=100) is view


def test_neighbours_of_a_test_image_are_sorted_by_similarity(embeddings):
    found = explore.neighbors(embeddings, index=3, k=5)
    similarities = [row["similarity"] for row in found["neighbors"]]
    assert len(similarities) == 5 and similarities == sorted(similarities, reverse=True)
    assert found["query"]["label"] == int(embeddings.query_labels[3])
    assert found["neighbors"][0]["image"].shape == (32, 32, 3)


def test_an_uploaded_copy_of_a_training_image_finds_itself_first(embeddings):
    found = explore.neighbors(embeddings, image=embeddings.bank_images[42], k=3)
    assert found["neighbors"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(found["neighbors"][0]["image"], embeddings.bank_images[42])


def test_an_index_out_of_range_is_a_clear_error(embeddings):
    with pytest.raises(ValueError, match="between 0 and 358"):
        explore.neighbors(embeddings, index=359)


def test_classify_any_image_format_and_name_the_file_that_is_not_one(run_path, tmp_path):
    rng = np.random.default_rng(0)
    files = {"colour.png": png_bytes(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)),
             "gray.png": png_bytes(rng.integers(0, 255, (20, 20), dtype=np.uint8)),
             "alpha.png": png_bytes(rng.integers(0, 255, (33, 17, 4), dtype=np.uint8)),
             "notes.txt": b"not an image at all"}
    big = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8)).save(big, format="JPEG")
    files["photo.jpg"] = big.getvalue()
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    results = {r["file"]: r for r in explore.classify_files(run_path, paths, top_k=3)}
    for name in ("colour.png", "gray.png", "alpha.png", "photo.jpg"):
        probabilities = [p["probability"] for p in results[name]["predictions"]]
        assert results[name]["error"] is None and len(probabilities) == 3
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    assert results["notes.txt"]["predictions"] == []
    assert "notes.txt" in results["notes.txt"]["error"] and "not an image" in results["notes.txt"]["error"]


def test_an_unfinished_run_is_refused_with_what_to_do(tmp_path):
    run = RunDir(tmp_path / "unfinished")
    run.create(TrainConfig().to_dict())
    with pytest.raises(ValueError, match="has not finished"):
        explore.load_run(run.path)
    with pytest.raises(ValueError, match="no classifier"):
        explore.classify_files(run.path, ["x.png"])


# ---------------------------------------------------------------------------------------------- preview


def test_preview_grid_puts_each_original_first_then_its_views():
    images = preview.sample_images("digits", 32, 3, seed=1)
    grid = preview.preview_augmentations(images, "strong", draws=4, seed=0, cell=40, padding=2)
    assert grid.shape == (3 * 42 + 2, 5 * 42 + 2, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[2:42, 2:42], preview.enlarge(images[0], 40))
    assert not np.array_equal(grid[2:42, 44:84], grid[2:42, 2:42]), "a strong view differs from its original"


def test_preview_draws_are_repeatable_per_seed():
    images = preview.sample_images("digits", 32, 2, seed=0)
    first = preview.preview_augmentations(images, "simclr", draws=2, seed=5)
    np.testing.assert_array_equal(first, preview.preview_augmentations(images, "simclr", draws=2, seed=5))
    assert not np.array_equal(first, preview.preview_augmentations(images, "simclr", draws=2, seed=6))


def test_controls_cover_every_augment_setting_and_rebuild_each_preset():
    names = {control["name"] for control in preview.augment_controls()}
    for field in dataclasses.fields(AugmentConfig):
        assert any(name == field.name or name.startswith(field.name + "_") for name in names), field.name
    for preset in PRESETS:
        assert preview.config_from_controls(preview.control_values(preset)) == PRESETS[preset]


def test_a_min_above_its_max_names_the_setting():
    values = {**preview.control_values("strong"), "crop_scale_min": 0.9, "crop_scale_max": 0.5}
    with pytest.raises(ValueError, match="crop scale"):
        preview.config_from_controls(values)


# ---------------------------------------------------------------------------------------------- finetune


def test_baseline_starts_from_scratch_with_the_same_architecture(run_path):
    config = RunDir(run_path).config()
    pretrained = keras.saving.load_model(RunDir(run_path).encoder_path, compile=False)
    scratch = finetune.pixels_encoder_from_scratch(config)
    shapes = lambda model: [tuple(w.shape) for w in model.weights]
    assert shapes(scratch) == shapes(pretrained)
    first_kernel = lambda model: keras.ops.convert_to_numpy(model.weights[0])
    assert not np.allclose(first_kernel(scratch), first_kernel(pretrained))


def test_baseline_vs_finetune_returns_and_saves_both_histories(run_path):
    seen = []
    result = finetune.baseline_vs_finetune(run_path, epochs=1, on_epoch=lambda *args: seen.append(args[:3]))
    assert set(result["histories"]) == {"baseline", "finetuned"}
    for history in result["histories"].values():
        assert len(history["val_accuracy"]) == 1 and 0.0 <= history["val_accuracy"][0] <= 1.0
    assert seen == [("baseline", 1, 1), ("finetuned", 1, 1)]
    assert finetune.saved_result(run_path)["final_val_accuracy"] == result["final_val_accuracy"]


def test_finetune_epochs_are_capped(run_path):
    with pytest.raises(ValueError, match="between 1 and"):
        finetune.baseline_vs_finetune(run_path, epochs=finetune.MAX_EPOCHS + 1)
