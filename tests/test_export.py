"""Exporting a run's embeddings of a folder: Embedding Projector files that parse, and a CSV of vectors."""
import csv
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from sslcore import export
from test_audit import corpus_and_run, folder_digest, private_cache  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root, run, _ = corpus_and_run(tmp_path_factory)
    return root, run


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


@pytest.mark.slow
def test_cli_export_projector_and_csv(corpus, tmp_path):
    from test_audit import run_cli

    root, run = corpus
    result = run_cli("export", "--run", run, "--data", f"folder:{root}", "--format", "projector", "--out",
                     tmp_path / "projector", "--max-images", 100)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["exported"] == 100 and summary["sampled"] is True
    assert len((tmp_path / "projector" / "metadata.tsv").read_text().splitlines()) == 100
    result = run_cli("export", "--run", run, "--data", f"folder:{root}", "--format", "csv", "--out", tmp_path / "v.csv")
    assert result.returncode == 0 and (tmp_path / "v.csv").read_text().startswith("path,f0,")
    refused = run_cli("export", "--run", run, "--data", "digits", "--out", tmp_path / "p")
    assert refused.returncode == 2 and "not a folder" in refused.stderr
