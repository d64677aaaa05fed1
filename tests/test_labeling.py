"""Few-label classification: 5 labelled digits per class name every other digit, from arrays, files and folders."""
import csv

import numpy as np
import pytest
from PIL import Image

from sslcore import labeling
from tests.corpus import digit_pictures, folder_digest
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def run(audit_corpus):
    return audit_corpus[1]


@pytest.fixture(scope="module")
def digits():
    """Colourised digits not in the audited corpus: 5 examples per class, then 400 to label."""
    pictures, labels = digit_pictures(indices=np.arange(1000, 1797))
    examples = np.concatenate([np.flatnonzero(labels == c)[:5] for c in range(10)])
    queries = np.setdiff1d(np.arange(len(labels)), examples)[:400]
    return pictures, labels, examples, queries


def write_examples(root, pictures, labels, examples):
    for n, index in enumerate(examples):
        (root / f"class_{labels[index]}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pictures[index]).save(root / f"class_{labels[index]}" / f"{n}.png")
    return root


def test_five_examples_per_class_beat_chance_by_a_wide_margin(run, digits):
    pictures, labels, examples, queries = digits
    names = [f"class_{label}" for label in labels]
    for method in labeling.METHODS:
        result = labeling.label_images(run, pictures[queries], examples=pictures[examples],
                                       example_labels=[names[i] for i in examples], method=method)
        accuracy = np.mean(np.array(result.labels) == np.array([names[i] for i in queries]))
        assert accuracy > 0.5, (method, accuracy)  # chance is 0.1
        assert result.scores.shape == (len(queries), 10)
        assert np.allclose(result.scores.sum(axis=1), 1) and np.all((0 < result.confidences) & (result.confidences <= 1))
        # Confidence means something: the confident half is more often right than the rest.
        right = np.array(result.labels) == np.array([names[i] for i in queries])
        confident = result.confidences >= np.median(result.confidences)
        assert right[confident].mean() >= right[~confident].mean()


def test_folders_in_and_csv_out_leave_the_folder_unchanged(run, digits, tmp_path):
    pictures, labels, examples, queries = digits
    examples_folder = write_examples(tmp_path / "examples", pictures, labels, examples)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in queries[:60]:
        Image.fromarray(pictures[index]).save(photos / f"q{index:04d}.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    before = folder_digest(photos)
    result = labeling.label_folder(run, f"folder:{photos}", f"folder:{examples_folder}", tmp_path / "labels.csv")
    with open(tmp_path / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "confidence"] and len(rows) == 60
    truth = {f"q{index:04d}.png": f"class_{labels[index]}" for index in queries[:60]}
    assert np.mean([row["label"] == truth[row["path"]] for row in rows]) > 0.5
    assert result.skipped == [("broken.jpg", result.skipped[0][1])] and result.examples == 50
    assert folder_digest(photos) == before
    with pytest.raises(ValueError, match="inside the image folder"):
        labeling.label_folder(run, photos, examples_folder, photos / "labels.csv")


def test_examples_as_a_class_to_files_mapping_and_images_as_files(run, digits, tmp_path):
    pictures, labels, examples, queries = digits
    by_class = {}
    for index in examples:
        path = tmp_path / f"example_{index}.png"
        Image.fromarray(pictures[index]).save(path)
        by_class.setdefault(str(labels[index]), []).append(str(path))
    files = []
    for index in queries[:10]:
        files.append(tmp_path / f"query_{index}.png")
        Image.fromarray(pictures[index]).resize((40, 40)).save(files[-1])  # any size: decoded to the run's
    (tmp_path / "notes.txt").write_text("hello")
    result = labeling.label_images(run, files + [tmp_path / "notes.txt"], examples=by_class)
    assert result.paths == [f.name for f in files] and result.skipped[0][0] == "notes.txt"
    assert result.class_names == [str(c) for c in range(10)] and len(result.rows()) == 10


def test_clear_errors_for_unusable_examples(run, digits):
    pictures, labels, examples, _ = digits
    with pytest.raises(ValueError, match="at least 2 classes"):
        labeling.label_images(run, pictures[:3], examples=pictures[:2], example_labels=["a", "a"])
    with pytest.raises(ValueError, match="one class per example"):
        labeling.label_images(run, pictures[:3], examples=pictures[:2], example_labels=["a"])
    with pytest.raises(ValueError, match="example_labels"):
        labeling.label_images(run, pictures[:3], examples=pictures[:2])
    with pytest.raises(ValueError, match="Unknown labelling method"):
        labeling.label_images(run, pictures[:3], examples=pictures[:2], example_labels=["a", "b"], method="svm")


@pytest.mark.slow
def test_cli_label_writes_the_csv_and_a_summary(run, digits, tmp_path, capsys):
    import json

    from sslcore import cli

    pictures, labels, examples, queries = digits
    examples_folder = write_examples(tmp_path / "few", pictures, labels, examples)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in queries[:40]:
        Image.fromarray(pictures[index]).save(photos / f"q{index:04d}.png")
    result = run_cli("label", "--run", run, "--data", f"folder:{photos}", "--examples", f"folder:{examples_folder}",
                     "--out", tmp_path / "labels.csv")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["images"] == 40 and summary["examples"] == 50 and sum(summary["counts"].values()) == 40
    assert (tmp_path / "labels.csv").read_text().startswith("path,label,confidence")
    # The refusal in this process: cli.main's exit code is the process's, and a second process costs seconds.
    code = cli.main(["label", "--run", str(run), "--data", f"folder:{photos}", "--examples", f"folder:{photos}",
                     "--out", str(tmp_path / "x.csv")])
    assert code == 2 and "no class subfolders" in capsys.readouterr().err
