"""Pushing a run to the Hub and loading it back, against a fake Hub (tests/fake_hub.py) on 127.0.0.1.

The real huggingface_hub client does every request; only the server is fake. Xet is switched off
(HF_HUB_DISABLE_XET) because the fake has no Xet storage: .keras files go through the classic LFS upload.
The tests that need a trained model share one tiny digits run (one epoch) and one push; the error cases use a
stand-in run folder, so they neither train nor import Keras.
"""
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import huggingface_hub.constants
from sslcore import cli, hub, hub_files
from tests.fake_hub import FakeHub
from tests.helpers import free_port, run_cli, tiny_config
ALICE = "hf_alice_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
BOB = "hf_bob_aa11bb22cc33dd44ee55ff6677889900"
WRONG = "hf_wrong_99887766554433221100ffeeddcc"
FAST = dict(backoff_seconds=0.01)


def files_under(*roots) -> list[Path]:
    return [path for root in roots for path in Path(root).rglob("*") if path.is_file()]


def assert_token_absent(token: str, *texts_or_roots) -> None:
    for item in texts_or_roots:
        if isinstance(item, Path):
            for path in files_under(item):
                assert token.encode() not in path.read_bytes(), f"token written to {path}"
        else:
            assert token not in str(item)


@pytest.fixture(scope="module", autouse=True)
def isolated_hub_settings(tmp_path_factory):
    """No real token or cache of this machine is used; the client takes the LFS path the fake implements."""
    home = tmp_path_factory.mktemp("hf-home")
    patch = pytest.MonkeyPatch()
    patch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    patch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(home / "token"))
    patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    patch.setenv("HF_HOME", str(home))
    patch.setenv("HF_HUB_DISABLE_XET", "1")
    patch.delenv("HF_TOKEN", raising=False)
    patch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    yield home
    patch.undo()


@pytest.fixture(scope="module")
def fake_hub():
    server = FakeHub({ALICE: "alice", BOB: "bob"}, orgs={"alice": ["alice-lab"]}, readonly_orgs={"alice": ["readers"]},
                     echo_token_in_errors=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def standin_run(tmp_path):
    """A run folder that looks finished (config + encoder file) for the error paths that stop before any model use."""
    run = tmp_path / "standin"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tiny_config().to_dict()))
    (run / "encoder.keras").write_bytes(b"not used")
    return run


# ---------------------------------------------------------------------------------------------- errors (fast)


def test_the_pushed_config_names_local_folders_without_their_paths():
    """A public repo's config.json must not publish a home directory or a Space visitor's upload folder."""
    from sslcore.hub_files import shared_config

    config = {**tiny_config().to_dict(), "data": "folder:/home/user/app/runs/.uploads/v0123/photos",
              "init": "/home/alice/runs/cifar-40", "tfds_data_dir": "/srv/tfds",
              "init_source": {"source": "/home/alice/runs/cifar-40", "data": "folder:/home/alice/cifar", "method": "simclr"}}
    shared = shared_config(config)
    assert shared["data"] == "folder:photos" and shared["init"] == "cifar-40" and shared["tfds_data_dir"] == "tfds"
    assert shared["init_source"] == {"source": "cifar-40", "data": "folder:cifar", "method": "simclr"}
    assert "/home" not in json.dumps(shared) and "/srv" not in json.dumps(shared)
    kept = {**config, "data": "hf:uoft-cs/cifar10", "init": "hf://timm/resnet18.a1_in1k", "tfds_data_dir": None,
            "init_source": None}
    assert shared_config(kept) == kept


def test_a_run_without_a_model_is_refused_before_any_request(tmp_path, fake_hub):
    before = len(fake_hub.requests)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    with pytest.raises(hub.HubError, match="no trained model") as caught:
        hub.push(unfinished, "alice/x", token=ALICE, endpoint=fake_hub.url)
    assert caught.value.kind == "no_model" and caught.value.exit_code == 2
    with pytest.raises(hub.HubError, match="not a run folder"):
        hub.push(tmp_path / "missing", "alice/x", token=ALICE, endpoint=fake_hub.url)
    assert len(fake_hub.requests) == before


def test_no_token_anywhere_says_where_to_put_one(standin_run, fake_hub):
    before = len(fake_hub.requests)
    with pytest.raises(hub.HubError, match="No Hugging Face token") as caught:
        hub.push(standin_run, "alice/x", endpoint=fake_hub.url)
    assert caught.value.kind == "no_token"
    assert "HF_TOKEN" in str(caught.value) and "hf auth login" in str(caught.value)
    assert len(fake_hub.requests) == before


def test_token_order_is_field_then_hf_token_then_saved_login(monkeypatch, isolated_hub_settings):
    token_file = Path(huggingface_hub.constants.HF_TOKEN_PATH)
    token_file.write_text("hf_saved_login_token_1234567890")
    try:
        assert hub.resolve_token()[0] == "hf_saved_login_token_1234567890"
        monkeypatch.setenv("HF_TOKEN", "hf_from_environment_1234567890")
        assert hub.resolve_token()[0] == "hf_from_environment_1234567890"
        assert hub.resolve_token("  hf_typed_in_field_1234567890 ")[0] == "hf_typed_in_field_1234567890"
    finally:
        token_file.unlink()


def test_a_bad_token_is_a_401_with_advice_and_no_token_in_the_message(standin_run, fake_hub):
    with pytest.raises(hub.HubError, match="401") as caught:
        hub.push(standin_run, "alice/x", token=WRONG, endpoint=fake_hub.url, **FAST)
    assert caught.value.kind == "bad_token" and "settings/tokens" in str(caught.value)
    assert WRONG not in str(caught.value) and WRONG not in repr(caught.value)
    assert caught.value.__suppress_context__  # the client's exception (which may quote the request) is not chained
    assert fake_hub.requests[-1].status == 401


def test_someone_elses_namespace_is_a_403_before_anything_is_measured(standin_run, fake_hub):
    with pytest.raises(hub.HubError, match="403") as caught:
        hub.push(standin_run, "bob/stolen", token=ALICE, endpoint=fake_hub.url, **FAST)
    assert caught.value.kind == "forbidden" and "alice/stolen" in str(caught.value)
    assert "bob/stolen" not in fake_hub.repos and ALICE not in str(caught.value)


def test_the_hubs_own_403_is_explained_too(standin_run, fake_hub, monkeypatch):
    """alice is only a reader of 'readers': whoami lists the org, the Hub refuses the write."""
    monkeypatch.setattr(hub_files, "measure", lambda run, evaluate: (None, ["0", "1"], None))
    with pytest.raises(hub.HubError, match="403") as caught:
        hub.push(standin_run, "readers/model", token=ALICE, endpoint=fake_hub.url, **FAST)
    assert caught.value.kind == "forbidden" and ALICE not in str(caught.value)
    assert ("POST", "/api/repos/create", 403) in fake_hub.routes_called()


def test_an_unreachable_hub_is_retried_then_named_with_what_to_check(standin_run):
    endpoint = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    messages, started = [], time.perf_counter()
    with pytest.raises(hub.HubError, match="Could not reach the Hub") as caught:
        hub.push(standin_run, "alice/x", token=ALICE, endpoint=endpoint, attempts=3, backoff_seconds=0.05,
                 progress=messages.append)
    assert caught.value.kind == "network" and caught.value.exit_code == 1
    assert "internet connection" in str(caught.value) and endpoint in str(caught.value)
    assert sum("retrying" in m for m in messages) == 2 and time.perf_counter() - started < 10
    with pytest.raises(hub.HubError, match="Could not reach the Hub"):
        hub.load("hf://alice/x", endpoint=endpoint, attempts=2, backoff_seconds=0.01)


def test_load_of_a_missing_repo_says_not_found(fake_hub):
    with pytest.raises(hub.HubError, match="not found") as caught:
        hub.load("hf://alice/does-not-exist", endpoint=fake_hub.url)
    assert caught.value.kind == "not_found"


def test_bad_repo_names_are_refused():
    for name in ("", "a/b/c", "alice/", "-x/y", "alice/x..y"):
        with pytest.raises(hub.HubError):
            hub.check_repo_id(name)
    assert hub.check_repo_id("hf://alice/simclr-digits") == "alice/simclr-digits"


# ---------------------------------------------------------------------------------------------- a real push (slow)


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    """The session's shared finished run (tests/conftest.py)."""
    return tiny_run


@pytest.fixture(scope="module")
def pushed(trained_run, fake_hub):
    return hub.push(trained_run, "alice/digits-simclr", token=ALICE, endpoint=fake_hub.url, **FAST)


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Held-out digits as PNG files (32 px, as the run saw them) plus one file that is not an image."""
    from sslcore.data import load

    data = load("digits", 32, test_fraction=0.2, seed=0)
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index in range(6):
        path = folder / f"digit-{index}-label-{data.test_labels[index]}.png"
        Image.fromarray(data.test_images[index]).save(path)
        paths.append(str(path))
    (folder / "notes.txt").write_text("not an image")
    return paths, str(folder / "notes.txt")


@pytest.mark.slow
def test_push_uploads_models_config_and_metrics_then_the_card(pushed, fake_hub):
    repo = fake_hub.repos["alice/digits-simclr"]
    assert {"encoder.keras", "classifier.keras", "config.json", "metrics.jsonl", "README.md"} <= set(repo.files)
    assert repo.files["encoder.keras"].lfs and repo.files["classifier.keras"].lfs      # binary → LFS upload
    assert not repo.files["config.json"].lfs and not repo.files["README.md"].lfs      # text → base64 in the commit
    (_, weights), (_, carded) = repo.commits[-2], repo.commits[-1]
    assert "encoder.keras" in weights and "README.md" not in weights and "README.md" in carded  # card after weights
    config = json.loads(repo.files["config.json"].content)
    assert config["class_names"] == [str(i) for i in range(10)] and config["image_size"] == 32
    assert config["method"] == "simclr"
    called = {(method, path) for method, path, _ in fake_hub.routes_called()}
    assert ("POST", "/alice/digits-simclr.git/info/lfs/objects/batch") in called                # the LFS path
    assert any(method == "PUT" and path.startswith("/__lfs/upload/") for method, path in called)
    assert pushed.url.endswith("/alice/digits-simclr") and 0 <= pushed.evaluation["linear_accuracy"] <= 1
    if importlib.util.find_spec("kaleido") is None:      # no PNG writer here: no images, and the notes say why
        assert not {"training_curves.png", "tsne.png"} & set(repo.files)
        assert any("kaleido" in note for note in pushed.notes), pushed.notes
    else:
        assert {"training_curves.png", "tsne.png"} <= set(repo.files)
        assert repo.files["training_curves.png"].content.startswith(b"\x89PNG")


@pytest.mark.slow
def test_with_a_png_writer_the_push_uploads_the_training_curves(trained_run, fake_hub, monkeypatch):
    """The branch this machine may lack (kaleido installed), with plotly's PNG writer stood in for."""
    import plotly.graph_objects as go

    def write_png(figure, path, **size):
        assert figure.data, "an empty figure"
        Image.new("RGB", (size.get("width", 10), size.get("height", 10)), "white").save(path, format="PNG")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "kaleido" else real_find_spec(name, *a))
    monkeypatch.setattr(go.Figure, "write_image", write_png)
    result = hub.push(trained_run, "alice/with-curves", token=ALICE, endpoint=fake_hub.url, evaluate=False, **FAST)
    repo = fake_hub.repos["alice/with-curves"]
    assert "training_curves.png" in result.files and repo.files["training_curves.png"].content.startswith(b"\x89PNG")
    assert not any("kaleido" in note for note in result.notes)


@pytest.mark.slow
def test_the_card_metadata_parses_with_the_two_protocol_metrics(pushed, fake_hub, tmp_path):
    from huggingface_hub import ModelCard, hf_hub_download

    path = hf_hub_download("alice/digits-simclr", "README.md", endpoint=fake_hub.url, cache_dir=tmp_path)
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "keras" and data.model_name == "digits-simclr"
    assert {"self-supervised", "simclr"} <= set(data.tags) and data.datasets == ["digits"]
    metrics = {result.metric_config: result for result in data.eval_results}
    assert set(metrics) == {"knn", "linear"}
    assert metrics["knn"].metric_value == pytest.approx(pushed.evaluation["knn_accuracy"], abs=1e-4)
    assert metrics["linear"].metric_value == pytest.approx(pushed.evaluation["linear_accuracy"], abs=1e-4)
    assert metrics["knn"].metric_args == {"k": 200, "temperature": 0.1, "similarity": "cosine"}
    assert all(r.task_type == "image-classification" and r.dataset_split == "test" for r in data.eval_results)
    assert "model-index" in data.to_dict()
    text = card.text
    assert 'hf_hub_download("alice/digits-simclr", "classifier.keras")' in text
    assert '"batch_size": 128' in text and "logistic regression" in text.lower()


@pytest.mark.slow
def test_a_loaded_model_predicts_exactly_like_the_local_run(pushed, trained_run, fake_hub, digit_files, tmp_path):
    import keras

    paths, not_an_image = digit_files
    remote = hub.load("hf://alice/digits-simclr", endpoint=fake_hub.url, cache_dir=tmp_path)
    local = hub.load(trained_run)
    assert remote.class_names == local.class_names == [str(i) for i in range(10)]
    assert remote.image_size == 32 and remote.config["method"] == "simclr" and "class_names" not in remote.config
    images = np.stack([np.asarray(Image.open(p)) for p in paths])
    run_classifier = keras.saving.load_model(Path(trained_run) / "classifier.keras")
    np.testing.assert_allclose(remote.predict(images), run_classifier.predict(images.astype("float32"), verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote.embed(images), local.embed(images), rtol=1e-5, atol=1e-6)
    results = remote.classify_files([*paths, not_an_image], top_k=2)
    assert [r["predictions"][0]["class"] for r in results[:-1]] == \
        [r["predictions"][0]["class"] for r in local.classify_files(paths, top_k=2)]
    assert results[-1]["predictions"] == [] and "notes.txt" in results[-1]["error"]


@pytest.mark.slow
def test_the_token_is_only_ever_in_the_authorization_header(pushed, trained_run, fake_hub, isolated_hub_settings):
    assert_token_absent(ALICE, fake_hub.sent_text(), json.dumps(pushed.to_dict()), Path(trained_run),
                        isolated_hub_settings)
    for repo in fake_hub.repos.values():
        for stored in repo.files.values():
            assert ALICE.encode() not in stored.content
    with_token = [r for r in fake_hub.requests if ALICE in r.headers.get("authorization", "")]
    assert with_token and all(r.headers["authorization"] == f"Bearer {ALICE}" for r in with_token)
    assert not any(r.path.startswith("/__lfs/upload") and "authorization" in r.headers for r in fake_hub.requests)


@pytest.mark.slow
def test_server_errors_are_retried_and_a_quoted_token_is_scrubbed(trained_run, fake_hub):
    fake_hub.fail("POST", "/api/models/alice/retried/commit", 503, times=2)
    result = hub.push(trained_run, "alice/retried", token=ALICE, endpoint=fake_hub.url, evaluate=False, **FAST)
    statuses = [r.status for r in fake_hub.requests if r.path == "/api/models/alice/retried/commit/main"]
    assert statuses[:3] == [503, 503, 200] and result.evaluation["linear_accuracy"] is None
    fake_hub.fail("POST", "/api/models/alice/retried/commit", 422, "commit refused for token {token}", times=1)
    with pytest.raises(hub.HubError, match="commit refused") as caught:
        hub.push(trained_run, "alice/retried", token=ALICE, endpoint=fake_hub.url, evaluate=False, **FAST)
    assert ALICE not in str(caught.value) and "hf_***" in str(caught.value)


@pytest.mark.slow
def test_a_private_push_needs_a_token_to_load(trained_run, fake_hub, digit_files, tmp_path):
    hub.push(trained_run, "alice-lab/private-digits", token=ALICE, endpoint=fake_hub.url, private=True, evaluate=False,
             **FAST)
    assert fake_hub.repos["alice-lab/private-digits"].private
    with pytest.raises(hub.HubError, match="private") as caught:
        hub.load("hf://alice-lab/private-digits", endpoint=fake_hub.url, cache_dir=tmp_path / "a")
    assert caught.value.kind == "not_found"
    model = hub.load("hf://alice-lab/private-digits", token=ALICE, endpoint=fake_hub.url, cache_dir=tmp_path / "b")
    images = np.stack([np.asarray(Image.open(path)) for path in digit_files[0]])
    np.testing.assert_allclose(model.predict(images), hub.load(trained_run).predict(images), rtol=1e-5, atol=1e-6)
    assert model.class_names == [str(i) for i in range(10)]


@pytest.mark.slow
def test_push_takes_hf_token_and_the_saved_login(trained_run, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert hub.push(trained_run, "env-push", endpoint=fake_hub.url, evaluate=False, **FAST).repo_id == "alice/env-push"
    monkeypatch.delenv("HF_TOKEN")
    token_file = Path(huggingface_hub.constants.HF_TOKEN_PATH)
    token_file.write_text(BOB)
    try:
        assert hub.push(trained_run, "bob/login-push", endpoint=fake_hub.url, evaluate=False, **FAST).url
    finally:
        token_file.unlink()


# ---------------------------------------------------------------------------------------------- the CLI (slow)


def hub_cli(*args, endpoint, home, timeout=240):
    """The CLI in a fresh process against the fake Hub, with no token of this machine."""
    return run_cli(*args, timeout=timeout, env={"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home),
                                                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_TOKEN": None})


@pytest.mark.slow
def test_cli_push_then_classify_from_the_hub_and_from_the_run(trained_run, fake_hub, digit_files, tmp_path, capsys):
    paths, not_an_image = digit_files
    pushed = hub_cli("push", "--run", trained_run, "--repo", "alice/cli-digits", "--token", ALICE, "--no-eval",
                     endpoint=fake_hub.url, home=tmp_path)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert json.loads(pushed.stdout.strip().splitlines()[-1])["repo_id"] == "alice/cli-digits"
    assert ALICE not in pushed.stdout + pushed.stderr

    remote = hub_cli("classify", "--model", "hf://alice/cli-digits", *paths, not_an_image, endpoint=fake_hub.url,
                     home=tmp_path)
    lines = [json.loads(line) for line in remote.stdout.strip().splitlines()]
    assert remote.returncode == 1, remote.stderr[-2000:]                      # one file was not an image
    per_image, summary = lines[:-1], lines[-1]
    assert [row["file"] for row in per_image] == [*paths, not_an_image]
    assert per_image[-1]["error"] and "notes.txt" in per_image[-1]["error"] and "notes.txt" in remote.stderr
    assert summary == {"model": "hf://alice/cli-digits", "images": 7, "classified": 6, "failed": 1}

    # The same command on the local run folder, in this process (a third subprocess would only re-import TensorFlow).
    assert cli.main(["classify", "--run", str(trained_run), *paths]) == 0
    local_rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()][:-1]
    for a, b in zip(per_image, local_rows):
        assert a["predictions"][0]["class"] == b["predictions"][0]["class"]
        assert a["predictions"][0]["probability"] == pytest.approx(b["predictions"][0]["probability"], abs=1e-5)


@pytest.mark.slow
def test_cli_push_with_a_bad_token_fails_with_the_reason(standin_run, fake_hub, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["push", "--run", str(standin_run), "--repo", "alice/nope", "--token", WRONG,
                  "--endpoint", fake_hub.url])
    out, err = capsys.readouterr()
    assert exited.value.code == 1 and "error: The Hub rejected the token you gave (401" in err
    assert WRONG not in out + err


# ---------------------------------------------------------------------------------------------- the Hub page (slow)


@pytest.mark.slow
def test_the_hub_page_pushes_through_its_api_and_never_shows_the_token(trained_run, fake_hub, tmp_path, monkeypatch):
    import shutil

    import gradio as gr
    from gradio_client import Client

    from pages import hub as hub_page
    from pages.common import AppContext
    from sslcore.jobs import JobManager

    # As HF_ENDPOINT set before import would: the client builds download URLs from this template.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    jobs = JobManager(tmp_path / "runs", max_jobs=1)
    shutil.copytree(trained_run, jobs.root / "digits-run")
    with gr.Blocks() as demo:
        with gr.Tab(hub_page.TITLE) as tab:
            hub_page.build(AppContext(jobs=jobs, demo=demo), tab)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert "/push" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        link, status = client.predict("digits-run", "alice/page-digits", ALICE, False, api_name="/push")
        assert "alice/page-digits" in link and "ssl-ok" in status and ALICE not in link + status
        link, status = client.predict("digits-run", "bob/page-digits", ALICE, False, api_name="/push")
        assert "403" in status and ALICE not in status
        monkeypatch.setenv("SPACE_ID", "someone/sslcore")   # on a Space an empty field never falls back
        monkeypatch.setenv("HF_TOKEN", ALICE)
        link, status = client.predict("digits-run", "alice/page-digits", "", False, api_name="/push")
        assert "Paste your Hugging Face token" in status
    finally:
        demo.close()
        jobs.shutdown()
    assert "alice/page-digits" in fake_hub.repos


@pytest.mark.slow
def test_the_apps_classify_and_explore_take_a_hub_model_id(pushed, trained_run, fake_hub, digit_files, monkeypatch,
                                                            tmp_path):
    """What the Classify and Explore pages call when a user types USER/NAME instead of picking a run."""
    from pages.common import AppContext
    from sslcore import explore
    from sslcore.jobs import JobManager

    # As HF_ENDPOINT set before import would: the client builds download URLs from this template.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    jobs = JobManager(tmp_path / "runs", start_thread=False)
    context = AppContext(jobs=jobs, demo=None)
    assert context.model_source("alice/digits-simclr") == "alice/digits-simclr"
    assert context.model_source("hf://alice/digits-simclr") == "hf://alice/digits-simclr"

    paths, not_an_image = digit_files
    from_hub = explore.classify_files("alice/digits-simclr", [*paths, not_an_image], top_k=2)
    from_run = explore.classify_files(trained_run, paths, top_k=2)
    for hub_result, run_result in zip(from_hub[:-1], from_run):
        assert [p["class"] for p in hub_result["predictions"]] == [p["class"] for p in run_result["predictions"]]
        assert [p["probability"] for p in hub_result["predictions"]] == pytest.approx(
            [p["probability"] for p in run_result["predictions"]], rel=1e-5)
    assert "image" in from_hub[0] and "notes.txt" in from_hub[-1]["error"]

    embedded = explore.load_run("alice/digits-simclr")
    report = explore.knn_report(embedded)
    assert report["accuracy"] == pytest.approx(explore.knn_report(explore.load_run(trained_run))["accuracy"])
    assert report["accuracy"] > 0.3 and report["images"] > 0

    # A repo whose config.json names a folder (on its author's machine, or one on this server picked by whoever
    # pushed it): Explore never reads it, even where the folder exists here.
    server_folder = os.path.dirname(paths[0])
    config = json.loads(fake_hub.repos["alice/digits-simclr"].files["config.json"].content)
    files = {name: item.content for name, item in fake_hub.repos["alice/digits-simclr"].files.items()}
    fake_hub.add_repo("mallory/reads-folders", {**files, "config.json": json.dumps(
        {**config, "data": f"folder:{server_folder}"}).encode()})
    with pytest.raises(ValueError, match="trained on its author's own images .*pick the data to embed"):
        explore.load_run("mallory/reads-folders")
