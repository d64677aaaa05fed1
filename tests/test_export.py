"""Exporting a run's embeddings of a folder: Embedding Projector files that parse, and a CSV of vectors."""
import csv
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from sslcore import cli, export
from sslcore.data import decode_image
from tests.corpus import folder_digest


@pytest.fixture(scope="module")
def corpus(audit_corpus):
    root, run, _ = audit_corpus
    return root, run


def cli_json(capsys, *args):
    """``python -m sslcore ARGS`` in this process (no fresh TensorFlow import): exit code and last JSON line."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exited:
        code = exited.code
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None), err


def read_pbtxt(path):
    text = path.read_text()
    return {key: re.findall(rf'{key}:\s*"?([^"\n]+)"?', text) for key in
            ("tensor_path", "metadata_path", "image_path", "single_image_dim")}, text


def test_projector_files_parse_and_agree(corpus, tmp_path):
    root, run = corpus
    before = folder_digest(root)
    summary = export.export_folder(run, f"folder:{root}", tmp_path / "projector")
    out = tmp_path / "projector"
    vectors = np.loadtxt(out / "vectors.tsv", delimiter="\t")
    metadata = (out / "metadata.tsv").read_text().splitlines()
    assert vectors.shape == (summary["images"], summary["dim"]) and summary["unreadable"] == 1
    assert len(metadata) == len(vectors) and "\t" not in metadata[0]  # one column: no header row
    assert metadata[0].endswith(".png") or metadata[0].endswith(".jpg")
    fields, text = read_pbtxt(out / "projector_config.pbtxt")
    assert text.startswith("embeddings {") and "sprite {" in text
    assert fields["tensor_path"] == ["vectors.tsv"] and fields["metadata_path"] == ["metadata.tsv"]
    assert fields["image_path"] == ["sprite.png"] and fields["single_image_dim"] == ["32", "32"]
    with Image.open(out / "sprite.png") as sprite:
        width, height = sprite.size
    assert width <= export.MAX_SPRITE_PIXELS and height <= export.MAX_SPRITE_PIXELS
    assert (width // 32) * (height // 32) >= len(vectors) and width % 32 == 0 and height % 32 == 0
    config = json.loads((out / "projector_config.json").read_text())["embeddings"][0]
    assert config["tensorShape"] == list(vectors.shape) and config["sprite"]["singleImageDim"] == [32, 32]
    assert folder_digest(root) == before


def test_labelled_folder_gets_a_header_row_and_a_class_column(corpus, tmp_path):
    root, run = corpus
    labelled = tmp_path / "labelled"
    for n, name in enumerate(sorted(p.name for p in root.glob("digit_00[0-2]*.png"))):
        (labelled / f"class{n % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, labelled / f"class{n % 2}" / name)
    export.export_folder(run, labelled, tmp_path / "projector")
    rows = (tmp_path / "projector" / "metadata.tsv").read_text().splitlines()
    assert rows[0] == "path\tclass" and rows[1].startswith("class0/") and rows[1].endswith("\tclass0")
    assert len(rows) - 1 == len(np.loadtxt(tmp_path / "projector" / "vectors.tsv", delimiter="\t"))


def test_sprite_cap_keeps_an_evenly_spread_sample(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    result = export.write_projector(tmp_path, rng.normal(size=(50, 4)), images, {"path": [f"{i}.png" for i in range(50)]},
                                    thumbnail_size=16, max_images=20)
    assert result.sampled and result.images == 20 and result.total == 50
    assert len(np.loadtxt(tmp_path / "vectors.tsv")) == 20 and len((tmp_path / "metadata.tsv").read_text().splitlines()) == 20
    assert export.max_sprite_images(32) == 65536 and export.max_sprite_images(100) == 81 * 81
    assert (tmp_path / "metadata.tsv").read_text().splitlines()[-1] == "49.png"


def test_csv_export_has_path_and_vector(corpus, tmp_path):
    root, run = corpus
    summary = export.export_folder(run, root, tmp_path / "vectors.csv", format="csv")
    with open(tmp_path / "vectors.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["path", "f0"] and len(rows[0]) == summary["dim"] + 1 and len(rows) == summary["images"] + 1


def test_flip_average_makes_a_mirror_image_embed_identically(corpus):
    _, run = corpus
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    encoder = export.load_encoder(run)
    both = export.embed(encoder, np.concatenate([image, image[:, :, ::-1]]))
    assert np.allclose(both[0], both[1], atol=1e-5)
    plain = export.embed(encoder, np.concatenate([image, image[:, :, ::-1]]), flip_average=False)
    assert not np.allclose(plain[0], plain[1], atol=1e-5)


def test_refuses_sources_that_are_not_folders_and_outputs_inside_the_folder(corpus):
    root, run = corpus
    with pytest.raises(ValueError, match="not a folder"):
        export.export_folder(run, "digits", "/tmp/x")
    with pytest.raises(ValueError, match="inside the image folder"):
        export.export_folder(run, root, root / "projector")
    with pytest.raises(ValueError, match="not a run folder"):
        export.export_folder(root, root, "/tmp/x")


def test_cli_export_projector_rows_are_the_listed_images_vectors_in_order(corpus, tmp_path, capsys):
    root, run = corpus
    code, summary, err = cli_json(capsys, "export", "--run", run, "--data", f"folder:{root}", "--format", "projector",
                                  "--out", tmp_path / "projector", "--max-images", 100)
    assert code == 0, err[-2000:]
    assert summary["exported"] == 100 and summary["sampled"] is True
    vectors = np.loadtxt(tmp_path / "projector" / "vectors.tsv", delimiter="\t", ndmin=2)
    paths = (tmp_path / "projector" / "metadata.tsv").read_text().splitlines()
    assert len(paths) == len(vectors) == 100 and len(set(paths)) == 100

    code, _, err = cli_json(capsys, "export", "--run", run, "--data", f"folder:{root}", "--format", "csv",
                            "--out", tmp_path / "v.csv")
    assert code == 0, err[-2000:]
    with open(tmp_path / "v.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["path", "f0"]
    by_path = {row[0]: np.array(row[1:], dtype=np.float64) for row in rows[1:]}
    # Row i of vectors.tsv is the vector of the image on line i of metadata.tsv, as the CSV export gives it...
    for path, vector in zip(paths, vectors):
        np.testing.assert_allclose(vector, by_path[path], rtol=1e-4, atol=1e-5, err_msg=path)
    # ...and the encoder's own (flip-averaged) embedding of that file, decoded at the run's size.
    encoder, size = export.load_encoder(run), export.run_image_size(run)
    for line in (0, 41, 99):
        image = decode_image(root / paths[line], size)[None]
        np.testing.assert_allclose(export.embed(encoder, image)[0], vectors[line], rtol=1e-3, atol=1e-4,
                                   err_msg=f"line {line}: {paths[line]}")


def test_cli_export_refuses_a_source_that_is_not_a_folder(corpus, tmp_path, capsys):
    _, run = corpus
    code, _, err = cli_json(capsys, "export", "--run", run, "--data", "digits", "--out", tmp_path / "p")
    assert code == 2 and "not a folder" in err
