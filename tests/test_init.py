"""``train --init SOURCE``: a run whose encoder starts from a pretrained one (a run folder, an encoder.keras file, or a
model pushed to the Hub), takes its architecture, records it, and is refused clearly when the source is wrong.

Every source is the session's tiny finished run (tests/conftest.py), or that run pushed to the fake Hub
(tests/fake_hub.py); the runs trained here are a few steps of the same tiny settings.
"""
import json
import re
import shutil

import numpy as np
import pytest

import huggingface_hub.constants
from sslcore import cli, hub, pretrained
from sslcore.config import TrainConfig
from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests.fake_hub import FakeHub
from tests.helpers import tiny_config

ALICE = "hf_alice_5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"


def weights(model) -> list[np.ndarray]:
    return [np.asarray(variable) for variable in model.weights]


def assert_same_weights(a, b) -> None:
    first, second = weights(a), weights(b)
    assert len(first) == len(second) and len(first) > 0
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)


def started_from(source, **overrides) -> Trainer:
    """A prepared (built, not trained) run of BYOL, another method than the source's, starting from ``source``."""
    settings = dict(epochs=1, encoder_width=None, method="byol", init=str(source))
    trainer = Trainer(tiny_config(**{**settings, **overrides}))
    trainer.prepare()
    return trainer


@pytest.mark.core
def test_the_encoder_starts_from_exactly_the_source_runs_weights(tiny_trainer, tiny_run):
    trainer = started_from(tiny_run)
    assert_same_weights(trainer.model.encoder, tiny_trainer.model.encoder)
    assert trainer.config.encoder_width == 16        # the architecture is the source's (the run left it unset)
    scratch = Trainer(tiny_config(epochs=1, encoder_width=16, method="byol"))
    scratch.prepare()
    assert any(not np.array_equal(x, y) for x, y in zip(weights(scratch.model.encoder), weights(trainer.model.encoder)))

    from_file = started_from(tiny_run / "encoder.keras")
    assert_same_weights(from_file.model.encoder, tiny_trainer.model.encoder)


def test_an_architecture_asked_for_that_is_not_the_sources_is_refused_naming_both(tiny_run, tmp_path, capsys):
    with pytest.raises(pretrained.InitMismatch, match=r"convnet of width 16 at 32 px, but this run asks for encoder_width 32 \(the source's is 16\)"):
        started_from(tiny_run, encoder_width=32)
    code = cli.main(["train", "--init", str(tiny_run), "--encoder", "resnet18", "--image-size", "16",
                     "--out", str(tmp_path / "run"), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    assert "encoder 'resnet18' (the source's is 'convnet')" in error and "image_size 16 (the source's is 32)" in error
    assert not (tmp_path / "run").exists()     # refused before anything was written


def test_a_missing_or_wrong_source_is_refused_before_any_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--init", str(tmp_path / "nowhere"), "--out", str(out), "--no-progress"]) == 2
    assert "no such run folder or file" in capsys.readouterr().err
    assert cli.main(["train", "--init", "alice/digits", "--out", str(out), "--no-progress"]) == 2
    assert "hf://OWNER/NAME" in capsys.readouterr().err
    not_a_model = tmp_path / "encoder.keras"
    not_a_model.write_bytes(b"not a model")
    assert cli.main(["train", "--init", str(not_a_model), "--out", str(out), "--no-progress"]) == 2
    assert "not a Keras model file" in capsys.readouterr().err
    assert not out.exists()


def test_the_app_refuses_a_start_that_cannot_work_before_queueing_it(tmp_path, tiny_run):
    from sslcore.jobs import JobManager

    class QueueOnly(JobManager):   # queues and never trains: this is about what Start accepts
        def _pump(self):
            pass

    jobs = QueueOnly(tmp_path / "runs", start_thread=False)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    not_keras = tmp_path / "weights.h5"
    not_keras.write_bytes(b"")
    for source, words in [(tmp_path / "nowhere", "no such run folder or file"),
                          (tmp_path, "not a run folder (no config.json)"),
                          (unfinished, "has no encoder.keras yet"),
                          (not_keras, "not a Keras model file (.keras)"),
                          ("hf://alice", "hf://OWNER/NAME[@REVISION]")]:
        with pytest.raises((ValueError, FileNotFoundError), match=re.escape(words)):
            jobs.start({"data": "digits", "epochs": 1, "init": str(source)})
    assert jobs.runs() == [], "nothing queued"
    assert jobs.start({"data": "digits", "epochs": 1, "init": str(tiny_run)})   # a finished run is a start
    assert jobs.start({"data": "digits", "epochs": 1, "init": "hf://alice/digits-simclr@main"})


@pytest.mark.core
def test_resume_continues_from_the_checkpoint_without_reading_the_source(tiny_run, tmp_path):
    source = shutil.copytree(tiny_run, tmp_path / "source")
    out = tmp_path / "run"
    first = Trainer(tiny_config(epochs=1, encoder_width=None, init=str(source)), out)
    assert first.fit(max_steps=3)["state"] == "stopped"
    shutil.rmtree(source)   # a resume that read the source again would fail here
    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["global_step"] == first.total_steps
    assert RunDir(out).config()["init_source"]["source"] == str(source)   # still says where it started


# ---------------------------------------------------------------------------------------------- from the Hub


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory):
    """The fake Hub as HF_ENDPOINT, with no token or cache of this machine."""
    home = tmp_path_factory.mktemp("hf-home")
    server = FakeHub({ALICE: "alice"})
    server.start()
    patch = pytest.MonkeyPatch()
    patch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    patch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(home / "token"))
    patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    # What HF_ENDPOINT set before huggingface_hub's import does: the API's base and the download URLs' template.
    patch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
    patch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                  server.url + "/{repo_id}/resolve/{revision}/{filename}")
    patch.setenv("HF_ENDPOINT", server.url)
    patch.setenv("HF_HUB_DISABLE_XET", "1")
    patch.delenv("HF_TOKEN", raising=False)
    patch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    yield server
    patch.undo()
    server.stop()


@pytest.fixture(scope="module")
def pushed_start(tiny_run, fake_hub):
    hub.push(tiny_run, "alice/digits-start", token=ALICE, evaluate=False, backoff_seconds=0.01)
    return "hf://alice/digits-start"


@pytest.mark.slow
def test_training_from_a_pushed_model_records_it_in_the_config_and_the_card(pushed_start, fake_hub, tiny_trainer,
                                                                            tmp_path, capsys):
    assert_same_weights(started_from(pushed_start).model.encoder, tiny_trainer.model.encoder)

    out = tmp_path / "continued"
    assert cli.main(["train", "--init", pushed_start, "--method", "byol", "--epochs", "1", "--batch-size", "128",
                     "--max-steps", "2", "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    recorded = json.loads((out / "config.json").read_text())
    commit = fake_hub.repos["alice/digits-start"].head
    assert recorded["init"] == pushed_start and recorded["encoder_width"] == 16
    assert recorded["init_source"] == {"source": pushed_start, "revision": commit, "encoder": "convnet",
                                       "encoder_width": 16, "image_size": 32, "method": "simclr", "data": "digits",
                                       "epochs": 1}
    assert TrainConfig.from_run_config(recorded).init == pushed_start

    hub.push(out, "alice/digits-continued", token=ALICE, evaluate=False, backoff_seconds=0.01)
    card = fake_hub.repos["alice/digits-continued"].files["README.md"].content.decode()
    assert "base_model: alice/digits-start" in card
    assert f"**Initialised from** `{pushed_start}` (commit `{commit}`), an encoder pretrained with simclr" in card


@pytest.mark.slow
def test_an_unknown_or_private_hub_model_is_a_clear_error_before_any_training(pushed_start, fake_hub, tiny_run,
                                                                               tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--init", "hf://alice/no-such-model", "--out", str(out), "--no-progress"])
    error = capsys.readouterr().err
    assert exited.value.code == 1 and "alice/no-such-model was not found" in error and "Traceback" not in error
    hub.push(tiny_run, "alice/private-start", token=ALICE, private=True, evaluate=False, backoff_seconds=0.01)
    with pytest.raises(SystemExit):
        cli.main(["train", "--init", "hf://alice/private-start", "--out", str(out), "--no-progress"])
    assert "private and no token was given" in capsys.readouterr().err
    assert not out.exists()
    # With the owner's token the private model is a start; the token is nowhere in the run folder or the output.
    assert cli.main(["train", "--init", "hf://alice/private-start", "--token", ALICE, "--max-steps", "1",
                     "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert ALICE not in printed.out + printed.err
    assert not [path for path in out.rglob("*") if path.is_file() and ALICE.encode() in path.read_bytes()]


@pytest.mark.slow
def test_on_a_space_the_owners_token_never_reads_a_private_start(pushed_start, fake_hub, tiny_run, tmp_path, capsys,
                                                                  monkeypatch):
    """A Space's job manager runs `sslcore train --init SOURCE` with the server's environment, whose HF_TOKEN is the
    Space owner's: a visitor who names the owner's private model gets an error, not the model."""
    hub.push(tiny_run, "alice/owners-private", token=ALICE, private=True, evaluate=False, backoff_seconds=0.01)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    monkeypatch.setenv("SPACE_ID", "alice/ssl-lab")
    out = tmp_path / "visitor"
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--init", "hf://alice/owners-private", "--max-steps", "1", "--out", str(out),
                  "--no-progress"])
    error = capsys.readouterr().err
    assert exited.value.code == 1 and "alice/owners-private" in error and ALICE not in error
    assert not out.exists()
    assert cli.main(["train", "--init", pushed_start, "--max-steps", "1", "--out", str(out), "--no-progress"]) == 0, \
        "public models still start a run on a Space"
    # On the owner's own machine the same environment reads it.
    monkeypatch.delenv("SPACE_ID")
    assert cli.main(["train", "--init", "hf://alice/owners-private", "--max-steps", "1", "--out", str(tmp_path / "own"),
                     "--no-progress"]) == 0


@pytest.mark.slow
def test_on_a_space_a_model_over_the_download_limit_is_refused_before_downloading(pushed_start, fake_hub, tmp_path,
                                                                                    monkeypatch):
    """One name typed by a visitor must not fill the Space's shared disk: the files are sized first (the Hub's file
    metadata) and a model over SSLCORE_HUB_DOWNLOAD_MB is refused with what to do, nothing fetched."""
    files = fake_hub.repos["alice/digits-start"].files
    size = sum(len(files[name].content) for name in files if name.endswith((".keras", "config.json")))
    monkeypatch.setenv("SPACE_ID", "alice/ssl-lab")
    monkeypatch.setenv("SSLCORE_HUB_DOWNLOAD_MB", str(0.5 * size / 1024 ** 2))
    fetched = len([record for record in fake_hub.requests if "/resolve/" in record.path])
    with pytest.raises(hub.HubError) as error:
        hub.download("alice/digits-start", cache_dir=tmp_path / "cache")
    assert error.value.kind == "too_large" and error.value.exit_code == 2
    assert "alice/digits-start is" in str(error.value) and "SSLCORE_HUB_DOWNLOAD_MB" in str(error.value)
    assert len([record for record in fake_hub.requests if "/resolve/" in record.path]) == fetched, "nothing fetched"
    monkeypatch.setenv("SSLCORE_HUB_DOWNLOAD_MB", str(2 * size / 1024 ** 2))
    folder = hub.download("alice/digits-start", cache_dir=tmp_path / "cache")
    assert folder.name == fake_hub.repos["alice/digits-start"].head and (folder / "encoder.keras").exists()
    monkeypatch.delenv("SPACE_ID")   # the user's own machine: no limit
    monkeypatch.setenv("SSLCORE_HUB_DOWNLOAD_MB", "0.000001")
    assert hub.download("alice/digits-start", cache_dir=tmp_path / "own").name == folder.name


def test_read_token_is_the_callers_own_else_anonymous_on_a_space(monkeypatch):
    from sslcore.credentials import read_token

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("SSLCORE_PUBLIC", raising=False)
    assert (read_token(None), read_token(" "), read_token(False), read_token(" hf_mine ")) == (None, None, False,
                                                                                                "hf_mine")
    monkeypatch.setenv("SSLCORE_PUBLIC", "1")   # any other public deployment: the same rule
    assert (read_token(None), read_token("hf_mine")) == (False, "hf_mine")
    monkeypatch.delenv("SSLCORE_PUBLIC")
    monkeypatch.setenv("SPACE_ID", "alice/ssl-lab")
    assert (read_token(None), read_token(" "), read_token(False), read_token("hf_mine")) == (False, False, False,
                                                                                             "hf_mine")


def test_an_empty_start_from_box_means_no_start():
    """The Train page's text box sends "" when left empty: that is no init, not a source named ""."""
    assert TrainConfig.parse({"init": "  "}).init is None and TrainConfig().init is None
    assert TrainConfig.parse({"init": " runs/a "}).init == "runs/a"


def test_the_card_names_a_local_start_by_its_run_not_its_path():
    from sslcore.model_card import build_model_card

    config = {**tiny_config().to_dict(), "init": "/home/someone/private/runs/photos-start",
              "init_source": {"source": "/home/someone/private/runs/photos-start", "revision": None,
                              "encoder": "convnet", "encoder_width": 32, "image_size": 32, "method": "byol",
                              "data": "tfds:cifar10"}}
    card = str(build_model_card(repo_id="alice/photos", config=config, class_names=[], evaluation=None,
                                files=["encoder.keras", "config.json"]))
    assert "**Initialised from** a local run, `photos-start`, an encoder pretrained with byol on CIFAR-10" in card
    assert "base_model" not in card
