"""``audit --model`` / ``label --model``: an encoder trained elsewhere (here a timm checkpoint on the fake Hub) embeds a
folder as it is, with no run of this lab in between."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from sslcore import cli, explore, model_encoder
from tests.test_init import fake_hub  # noqa: F401 - the fake Hub as HF_ENDPOINT (a fixture)
from tests.test_labs import labelled_zip, space  # noqa: F401 - the app as a Space serves it (a fixture)
from tests.test_timm_start import SIZE, reference_features, timm_start  # noqa: F401 - a fixture too


def colour_folder(root, colours: dict[str, tuple[int, int, int]], count: int, size: int, seed: int = 0):
    """``count`` noisy images of each colour, one subfolder per colour name."""
    rng = np.random.default_rng(seed)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{name}{index}.png")
    return root


def test_a_timm_checkpoint_embeds_at_another_size_exactly_as_timm_would(timm_start):  # noqa: F811
    source, tensors = timm_start
    own = model_encoder.load(source)
    assert own.image_size == SIZE and own.revision
    larger = model_encoder.load(source, image_size=96)
    assert larger.image_size == 96 and larger.encoder.input.shape[1] == 96
    pixels = np.random.default_rng(2).integers(0, 256, (2, 96, 96, 3)).astype("uint8")
    theirs = reference_features(tensors, pixels)
    np.testing.assert_allclose(np.asarray(larger.encoder.predict(pixels, verbose=0)), theirs,
                               rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_audit_and_label_take_the_model_instead_of_a_run(timm_start, fake_hub, tmp_path, capsys):  # noqa: F811
    source, _ = timm_start
    folder = colour_folder(tmp_path / "photos", {"red": (200, 40, 40), "blue": (40, 60, 200)}, 8, SIZE)
    commit = fake_hub.repos["timm/resnet18.test_in1k"].head

    assert cli.main(["audit", "--model", source, "--data", f"folder:{folder}", "--out", str(tmp_path / "audit")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"] == source and summary["revision"] == commit and summary["image_size"] == SIZE
    assert summary["images"] == 16
    with open(tmp_path / "audit" / "outliers.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 16

    examples = tmp_path / "examples"
    for name in ("red", "blue"):
        (examples / name).mkdir(parents=True)
        for index in range(2):
            Image.open(folder / name / f"{name}{index}.png").save(examples / name / f"e{index}.png")
    out = tmp_path / "labels.csv"
    assert cli.main(["label", "--model", source, "--data", f"folder:{folder}", "--examples", f"folder:{examples}",
                     "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"] == source and summary["images"] == 16
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    # Random weights still see colour: each image gets its own colour's label from two examples of each.
    assert all(row["label"] == row["path"].split("/")[0] for row in rows), rows


def test_explore_embeds_any_data_with_a_pretrained_encoder_and_asks_for_data_without(timm_start, tmp_path):  # noqa: F811
    source, _ = timm_start
    with pytest.raises(ValueError, match="is a pretrained encoder with no data of its own: pick the data"):
        explore.load_run(source)
    folder = colour_folder(tmp_path / "photos", {"red": (200, 40, 40), "blue": (40, 60, 200)}, 15, SIZE)
    embedded = explore.load_run(source, data=f"folder:{folder}")
    assert embedded.config["image_size"] == SIZE and embedded.class_names == ["blue", "red"]
    assert len(embedded.query_images) + len(embedded.bank_images) == 30   # split as a run on it: 24 + 6
    encoder = model_encoder.load(source).encoder
    np.testing.assert_allclose(embedded.query_features, encoder.predict(embedded.query_images, verbose=0),
                               rtol=1e-4, atol=1e-5)
    assert explore.knn_report(embedded)["accuracy"] == 1.0   # random weights still tell red from blue
    found = explore.neighbors(embedded, index=0, k=3)
    assert {row["class_name"] for row in found["neighbors"]} == {found["query"]["class_name"]}
    assert explore.load_run(source, data=f"folder:{folder}") is embedded   # embedded once, then from memory
    few = colour_folder(tmp_path / "few", {"red": (200, 40, 40), "blue": (40, 60, 200)}, 5, SIZE)
    with pytest.raises(ValueError, match="2 test image.s. are too few for a t-SNE, which needs 3 or more"):
        explore.tsne_view(explore.load_run(source, data=f"folder:{few}"))


@pytest.mark.parametrize("model, flags, message", [
    ("timm", ["--image-size", "32"], "--model hf://timm/resnet18.test_in1k: --image-size 32 does not fit its weights, "
                                     "which take at least 65 px"),
    ("/nowhere/encoder.keras", [], "--model /nowhere/encoder.keras: no such run folder or file"),
])
def test_a_model_that_cannot_embed_is_refused_by_name(timm_start, tmp_path, capsys, model, flags, message):  # noqa: F811
    source, _ = timm_start
    folder = colour_folder(tmp_path / "photos", {"grey": (128, 128, 128)}, 2, SIZE)
    out = tmp_path / "audit"
    assert cli.main(["audit", "--model", source if model == "timm" else model, *flags, "--data", f"folder:{folder}",
                     "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and not out.exists()


def test_run_and_model_are_one_or_the_other(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["audit", "--run", str(tmp_path), "--model", "hf://timm/resnet18.a1_in1k", "--data", "folder:x",
                  "--out", str(tmp_path / "o")])
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli.main(["label", "--run", str(tmp_path), "--image-size", "96", "--data", f"folder:{tmp_path}",
                     "--examples", f"folder:{tmp_path}", "--out", str(tmp_path / "l.csv")]) == 2
    assert "--image-size only applies to --model" in capsys.readouterr().err


@pytest.mark.slow
def test_a_visitor_audits_and_labels_an_upload_with_a_hub_encoder(timm_start, space, tmp_path):  # noqa: F811
    from gradio_client import Client, handle_file

    source, _ = timm_start
    url, _ = space
    visitor = Client(url, verbose=False)
    visitor.predict([handle_file(labelled_zip(tmp_path / "photos.zip", per_class=8))], api_name="/upload_data")
    pairs, outliers, files, status, *_ = visitor.predict(source, "upload:photos", 0.9, api_name="/audit")
    assert "16 images in photos:" in status and len(outliers) == 16, status
    assert ".uploads" not in status   # the server's own folders stay unnamed
    _, _, _, status, *_ = visitor.predict(source, "", 0.9, api_name="/audit")
    assert "brings no images of its own" in status
    # A path typed in its place is a run name, and there are none of the server's to read.
    _, _, _, status, *_ = visitor.predict(str(tmp_path), "upload:photos", 0.9, api_name="/audit")
    assert "is not a run id" in status and "Traceback" not in status
    labelled, labels_file, status = visitor.predict(source, "upload:photos", "upload:photos", None, None, "knn",
                                                    api_name="/label")
    assert "labelled 16 images from 16 examples" in status, status

    # Explore: the encoder has no data of its own, so the visitor picks theirs.
    _, status = visitor.predict(source, api_name="/embeddings")
    assert "no data of its own: pick the data" in status, status
    figure, status = visitor.predict(source, "upload:photos", "", api_name="/embeddings")
    assert "test images of upload:photos embedded by" in status and ".uploads" not in status, status
    knn, _, _ = visitor.predict(source, "upload:photos", "", api_name="/evaluation")
    assert "kNN accuracy" in knn
    # Another visitor's upload name reads nothing of this one's.
    _, status = Client(url, verbose=False).predict(source, "upload:photos", "", api_name="/embeddings")
    assert "embedded by" not in status, status


@pytest.mark.slow
def test_a_visitor_never_reads_a_private_model_with_the_space_owners_token(timm_start, fake_hub, space, tmp_path,  # noqa: F811
                                                                        monkeypatch):
    from gradio_client import Client, handle_file
    from safetensors.numpy import save as to_safetensors

    from pages.common import hub_token
    from tests.test_init import ALICE
    from tests.test_timm_start import random_checkpoint, timm_config

    fake_hub.add_repo("alice/private-resnet", {"config.json": timm_config(),
                                               "model.safetensors": to_safetensors(random_checkpoint(4))}, private=True)
    monkeypatch.setenv("HF_TOKEN", ALICE)   # the Space owner's secret, as a Space with a push token would hold it
    url, _ = space
    assert hub_token() is False and hub_token(" hf_visitors_own ") == "hf_visitors_own"
    visitor = Client(url, verbose=False)
    visitor.predict([handle_file(labelled_zip(tmp_path / "photos.zip", per_class=3))], api_name="/upload_data")
    for model in ("hf://alice/private-resnet", "alice/private-resnet"):
        _, _, _, status, *_ = visitor.predict(model, "upload:photos", 0.9, api_name="/audit")
        assert "alice/private-resnet" in status and "6 images" not in status, status
        assert ALICE not in status
    # The owner, on their own machine (no SPACE_ID), reads it with the same HF_TOKEN.
    monkeypatch.delenv("SPACE_ID")
    assert hub_token() is None
    assert model_encoder.load("hf://alice/private-resnet", token=hub_token()).image_size == SIZE
