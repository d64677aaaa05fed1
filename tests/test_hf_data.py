"""The hf:OWNER/NAME data source against the fake Hub (tests/fake_hub.py) on 127.0.0.1.

The real huggingface_hub client and pyarrow do all the work; only the server is fake, and the parquet files are
written the way `datasets` writes them (tests/hf_datasets.py). Every test gets its own Hub cache and sslcore cache
under tmp_path, so nothing is read from or left in this machine's caches.
"""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import huggingface_hub.constants as hf_constants
from fake_hub import FakeHub
from hf_datasets import CLASSES, make_images, parquet_bytes, split_file, text_parquet_bytes
from sslcore.data import DataError, load
from sslcore.data.hf_source import load_hf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALICE = "hf_alice_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
BOB = "hf_bob_aa11bb22cc33dd44ee55ff6677889900"
WRONG = "hf_wrong_99887766554433221100ffeeddcc"
SIZE = 16


@pytest.fixture(scope="module")
def hub():
    server = FakeHub({ALICE: "alice", BOB: "bob"}, echo_token_in_errors=True)
    server.start()
    add = lambda repo_id, files, **kw: server.add_repo(repo_id, files, repo_type="datasets", **kw)
    add("alice/shapes", {"README.md": b"# shapes\n",
                         "plain_text/train-00000-of-00001.parquet": split_file("train", 30, seed=1),
                         "plain_text/test-00000-of-00001.parquet": split_file("test", 12, seed=2)})
    add("alice/train-only", {"data/train-00000-of-00002.parquet": split_file("train", 20, seed=3),
                             "data/train-00001-of-00002.parquet": split_file("train", 20, seed=4)})
    unlabelled_images, _ = make_images(25, seed=5)
    add("alice/stl", {"data/unlabelled-00000-of-00001.parquet": parquet_bytes(unlabelled_images, np.full(25, -1)),
                      "data/train-00000-of-00001.parquet": split_file("train", 9, seed=6),
                      "data/test-00000-of-00001.parquet": split_file("test", 6, seed=7)})
    add("alice/no-labels", {"train.parquet": split_file("train", 10, seed=8, labelled=False)})
    add("alice/configs", {"small/train-00000-of-00001.parquet": split_file("train", 9, seed=9),
                          "large/train-00000-of-00001.parquet": split_file("train", 15, seed=10),
                          "large/test-00000-of-00001.parquet": split_file("test", 6, seed=11)})
    add("alice/converted", {"README.md": b"# images in a zip\n", "images.zip": b"PK\x03\x04 not really"})
    server.add_commit("alice/converted", {"default/train/0000.parquet": split_file("train", 12, seed=12),
                                          "default/test/0000.parquet": split_file("test", 6, seed=13)},
                      repo_type="datasets", branch="refs/convert/parquet", replace=True)
    add("alice/texts", {"data/train-00000-of-00001.parquet": text_parquet_bytes()})
    add("alice/gated", {"data/train-00000-of-00001.parquet": split_file("train", 9, seed=14)}, gated=True)
    add("alice/private", {"data/train-00000-of-00001.parquet": split_file("train", 9, seed=15)}, private=True)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, hub):
    """Point the client at the fake (constants are read at import, so they are patched too); no real token or cache."""
    for name, value in [("ENDPOINT", hub.url), ("HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"),
                        ("HF_HUB_CACHE", str(tmp_path / "hf" / "hub")), ("HF_TOKEN_PATH", str(tmp_path / "hf" / "token")),
                        ("HF_HUB_DISABLE_XET", True), ("HF_HUB_OFFLINE", False)]:
        monkeypatch.setattr(hf_constants, name, value)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("SSLCORE_CACHE", str(tmp_path / "sslcore"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def offline(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def downloads(hub) -> list[str]:
    return [record.path for record in hub.requests if "/resolve/" in record.path]


def hf(spec, **kwargs):
    kwargs.setdefault("test_fraction", 0.25)
    kwargs.setdefault("seed", 0)
    return load_hf(f"hf:{spec}", spec, SIZE, **kwargs)


def assert_colours_match_labels(images, labels):
    """make_images paints class k's images mostly in channel k: decoding kept pixels and labels together."""
    assert (images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1) == labels).all()


# ---------------------------------------------------------------------------------------------- loading

def test_labelled_train_and_test_then_from_the_cache(hub, isolated, capsys):
    dataset = load("hf:alice/shapes", SIZE, progress=True)
    assert dataset.name == "hf:alice/shapes" and dataset.class_names == CLASSES
    assert dataset.train_images.shape == (30, SIZE, SIZE, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.test_images.shape == (12, SIZE, SIZE, 3) and dataset.probe_images is None
    assert_colours_match_labels(dataset.train_images, dataset.train_labels)
    assert_colours_match_labels(dataset.test_images, dataset.test_labels)
    assert "decoding alice/shapes" in capsys.readouterr().err
    assert len(list((isolated / "sslcore" / "hf").glob("alice--shapes-*-16px-*.npz"))) == 1

    before = len(downloads(hub))
    again = hf("alice/shapes")
    assert downloads(hub)[before:] == []
    np.testing.assert_array_equal(again.train_images, dataset.train_images)
    np.testing.assert_array_equal(again.test_labels, dataset.test_labels)
    assert "decoding" not in capsys.readouterr().err


def test_a_split_too_big_to_decode_on_a_public_server_is_refused_before_decoding(monkeypatch):
    """A stranger picks the data set and the image size; their product must not take the server's memory."""
    monkeypatch.setenv("SSLCORE_PUBLIC", "1")
    monkeypatch.setenv("SSLCORE_MAX_DECODED_MB", "0.02")     # 20,971 bytes: 27 images at 16 px, not 30
    with pytest.raises(DataError, match=r"30 images at 16 px would take 0\.0 GB .* pick an image size of 15 px or less"):
        hf("alice/shapes")
    monkeypatch.setenv("SSLCORE_MAX_DECODED_MB", "1")
    assert hf("alice/shapes").train_images.shape[0] == 30


def test_train_only_holds_out_a_stratified_test_split():
    dataset = hf("alice/train-only", test_fraction=0.25, seed=3)
    assert len(dataset.train_images) + len(dataset.test_images) == 40
    assert np.bincount(dataset.test_labels).tolist() == [4, 4, 3]    # classes of 14, 14, 12 images
    assert_colours_match_labels(dataset.train_images, dataset.train_labels)
    same = hf("alice/train-only", test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(same.test_images, dataset.test_images)


def test_unlabelled_split_is_the_pool_and_train_the_probe_set():
    dataset = hf("alice/stl")
    assert dataset.train_images.shape[0] == 25 and dataset.train_labels is None
    assert dataset.probe_images.shape[0] == 9 and dataset.test_images.shape[0] == 6
    assert dataset.labelled_images is dataset.probe_images and dataset.class_names == CLASSES


def test_no_class_label_gives_an_unlabelled_pool():
    dataset = hf("alice/no-labels")
    assert dataset.train_images.shape[0] == 10 and dataset.train_labels is None and dataset.test_images is None


def test_revision_picks_a_commit_or_branch(hub):
    hub.add_repo("alice/versions", {"data/train-00000-of-00001.parquet": split_file("train", 9, seed=20)},
                 repo_type="datasets")
    first = hub.datasets["alice/versions"].head
    hub.add_commit("alice/versions", {"data/train-00000-of-00001.parquet": split_file("train", 15, seed=21)},
                   repo_type="datasets")
    hub.add_commit("alice/versions", {"data/train-00000-of-00001.parquet": split_file("train", 6, seed=22)},
                   repo_type="datasets", branch="small")
    size = lambda spec: len(hf(spec, test_fraction=0.0).train_images)
    assert (size("alice/versions"), size(f"alice/versions@{first}"), size("alice/versions@small")) == (15, 9, 6)
    assert size("alice/versions@main") == 15


def test_config_is_chosen_with_a_colon():
    assert len(hf("alice/configs:small", test_fraction=0.0).train_images) == 9
    large = hf("alice/configs@main:large")
    assert (len(large.train_images), len(large.test_images)) == (15, 6)
    with pytest.raises(DataError, match=r"several configs \(large/, small/\).*hf:alice/configs:CONFIG"):
        hf("alice/configs")
    with pytest.raises(DataError, match=r"no config 'huge'.*large/, small/"):
        hf("alice/configs:huge")


def test_parquet_conversion_branch_is_used_when_main_has_no_parquet():
    dataset = hf("alice/converted")
    assert (len(dataset.train_images), len(dataset.test_images)) == (12, 6)


def test_offline_loads_from_a_prefilled_hub_cache(hub, isolated, monkeypatch):
    hf("alice/shapes")                             # fills the Hub cache (and the sslcore cache, removed below)
    hf("alice/configs:large")
    for cache in (isolated / "sslcore" / "hf").iterdir():
        cache.unlink()
    offline(monkeypatch)
    before = len(hub.requests)
    dataset = hf("alice/shapes")
    assert (len(dataset.train_images), len(dataset.test_images)) == (30, 12)
    assert len(hf("alice/configs:large").train_images) == 15
    assert len(hub.requests) == before           # not even an info request
    assert len(list((isolated / "sslcore" / "hf").iterdir())) == 2


def test_unreachable_hub_falls_back_to_the_hub_cache(hub, monkeypatch, caplog):
    online = hf("alice/train-only")
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", dead)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    np.testing.assert_array_equal(hf("alice/train-only").train_images, online.train_images)
    assert "unreachable" in caplog.text


# ---------------------------------------------------------------------------------------------- errors

def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]            # nothing listens once the probe is closed


@pytest.mark.parametrize("spec", ["cifar10", "a/b/c", "alice/shapes@", "alice/shapes:", ":cfg", "alice/sh apes", "",
                                  "alice/shapes@../../../../etc/hostname"])
def test_bad_spec(spec):
    with pytest.raises(DataError, match=r"is not a Hub dataset: write 'hf:OWNER/NAME'"):
        hf(spec)


def test_missing_repo():
    with pytest.raises(DataError) as error:
        hf("alice/nothing")
    assert "no dataset repo 'alice/nothing'" in str(error.value) and "HF_TOKEN" in str(error.value)


def test_private_repo_with_another_users_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", BOB)
    with pytest.raises(DataError) as error:
        hf("alice/private")
    assert "private and your token cannot read it" in str(error.value) and BOB not in str(error.value)


def test_on_a_space_the_owners_token_never_reads_a_private_dataset(monkeypatch):
    """On a Space HF_TOKEN is the owner's: a visitor's hf: source (loaded in the training process, which inherits
    the server's environment) is read anonymously, so the owner's private dataset is refused."""
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert len(hf("alice/private").train_images) > 0, "on the owner's own machine their token reads it"
    monkeypatch.setenv("SPACE_ID", "alice/ssl-lab")
    with pytest.raises(DataError) as error:
        hf("alice/private")
    assert "this Space loads public datasets only" in str(error.value) and ALICE not in str(error.value)
    assert len(hf("alice/shapes").train_images) > 0, "public datasets still load on a Space"


def test_on_a_space_a_dataset_over_the_download_limit_is_refused_before_downloading(hub, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "alice/ssl-lab")
    monkeypatch.setenv("SSLCORE_HUB_DOWNLOAD_MB", "0.001")   # 1 KiB: smaller than either split file
    fetched = len(downloads(hub))
    with pytest.raises(DataError) as error:
        hf("alice/train-only")
    assert "hf:alice/train-only is" in str(error.value) and "SSLCORE_HUB_DOWNLOAD_MB" in str(error.value)
    assert len(downloads(hub)) == fetched, "refused before any file was fetched"
    monkeypatch.setenv("SSLCORE_HUB_DOWNLOAD_MB", "10")
    assert len(hf("alice/train-only").train_images) > 0


def test_gated_repo_without_token():
    with pytest.raises(DataError) as error:
        hf("alice/gated")
    message = str(error.value)
    assert "gated" in message and "accepted its conditions" in message and "set HF_TOKEN" in message
    assert "Traceback" not in message


def test_gated_repo_with_a_token_not_granted(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", BOB)
    with pytest.raises(DataError) as error:
        hf("alice/gated")
    assert "has not been granted access (403)" in str(error.value) and BOB not in str(error.value)
    hub.datasets["alice/gated"].granted.add("bob")
    try:
        assert len(hf("alice/gated", test_fraction=0.0).train_images) == 9
    finally:
        hub.datasets["alice/gated"].granted.discard("bob")


def test_invalid_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRONG)
    with pytest.raises(DataError) as error:
        hf("alice/shapes")
    assert "rejected your Hugging Face token (401)" in str(error.value) and WRONG not in str(error.value)


def test_no_image_column_names_the_columns():
    with pytest.raises(DataError, match=r"no image column \(columns: text \(string\), label \(int64\)\)"):
        hf("alice/texts")


def test_no_parquet_files(hub):
    hub.add_repo("alice/zips", {"images.zip": b"PK\x03\x04"}, repo_type="datasets")
    with pytest.raises(DataError, match=r"no parquet files \(it has \.gitattributes, images\.zip\)"):
        hf("alice/zips")


def test_unreachable_hub(monkeypatch):
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", dead)
    with pytest.raises(DataError) as error:
        hf("alice/shapes")
    message = str(error.value)
    assert f"could not reach the Hugging Face Hub at {dead}" in message and "HF_HUB_OFFLINE=1" in message


def test_offline_without_cache(monkeypatch):
    offline(monkeypatch)
    with pytest.raises(DataError, match=r"not in the local Hugging Face cache .* HF_HUB_OFFLINE is set"):
        hf("alice/shapes")


def test_cli_reports_a_missing_dataset_without_traceback(hub, isolated):
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow")}
    result = subprocess.run([sys.executable, "-m", "sslcore", "train", "--data", "hf:nope/nothing", "--epochs", "1",
                             "--out", str(isolated / "run"), "--no-progress"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: hf:nope/nothing: there is no dataset repo 'nope/nothing'" in result.stderr
    assert "Traceback" not in result.stderr
