"""The trainer: run folder contents, exact resume, cooperative stop, time budget, NaN and bad settings."""
import json

import keras
import numpy as np
import pytest

from sslcore.runs import RunDir
from sslcore.trainer import Trainer, TrainingDiverged
from tests.helpers import StopAfter, tiny_config

pytestmark = pytest.mark.core

TIMING_FIELDS = {"images_per_second", "seconds", "eval_seconds", "elapsed_seconds", "eta_seconds"}


def weights(trainer):
    return [keras.ops.convert_to_numpy(v) for v in trainer.model.variables]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def test_run_folder_holds_everything(tmp_path):
    summary = Trainer(tiny_config(), tmp_path / "run").fit()
    run = RunDir(tmp_path / "run")
    rows = run.epochs()
    assert [row["epoch"] for row in rows] == [1, 2]
    for key in ("epoch", "loss", "contrastive_accuracy", "probe_accuracy", "knn_accuracy", "images_per_second", "seconds"):
        assert all(row[key] is not None for row in rows), key
    assert rows[-1]["knn_accuracy"] > 0.3, "kNN on digits features should beat chance (0.1) clearly"
    assert len(run.steps()) == rows[-1]["step"]
    assert run.status()["state"] == "finished"
    assert run.checkpoints() and run.encoder_path.exists() and run.classifier_path.exists()
    config = json.loads(run.config_path.read_text())
    assert config["method"] == "simclr" and config["backend"] == keras.backend.backend()
    assert config["class_names"] == [str(i) for i in range(10)]
    assert summary["knn_accuracy"] == rows[-1]["knn_accuracy"]


def test_saved_encoder_loads_with_plain_keras_and_matches(tmp_path):
    trainer = Trainer(tiny_config(epochs=1), tmp_path / "run")
    trainer.fit()
    images = trainer.dataset.test_images[:16]
    encoder = keras.saving.load_model(tmp_path / "run" / "encoder.keras")
    np.testing.assert_allclose(encoder.predict(images.astype("float32"), verbose=0), trainer.embed(images), atol=1e-4)
    classifier = keras.saving.load_model(tmp_path / "run" / "classifier.keras")
    probabilities = classifier.predict(images.astype("float32"), verbose=0)
    assert probabilities.shape == (16, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_saved_classifier_reproduces_the_reported_probe_accuracy(tmp_path):
    """The classifier users get is the probe the run measured, not one with stale normalisation statistics."""
    trainer = Trainer(tiny_config(epochs=2), tmp_path / "run")
    trainer.fit()
    classifier = keras.saving.load_model(tmp_path / "run" / "classifier.keras")
    data = trainer.dataset
    probabilities = classifier.predict(data.test_images.astype("float32"), verbose=0)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == data.test_labels))
    assert accuracy == pytest.approx(RunDir(tmp_path / "run").epochs()[-1]["probe_accuracy"], abs=1e-6)
    assert accuracy > 0.3
    assert np.mean(np.max(probabilities, axis=1)) > 0.15, "more confident than uniform (0.1)"
    # The probe standardises with the statistics of clean labelled features, not lagging moving averages.
    standardize = trainer.model.linear_probe.get_layer("linear_probe_standardize")
    bank = trainer.embed(data.labelled_images[trainer.bank_index])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(standardize.moving_mean), bank.mean(axis=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path, method):
    config = tiny_config(method=method, method_params={"queue_size": 256} if method == "moco" else {})
    whole = Trainer(config, tmp_path / "whole")
    whole.fit()

    first = Trainer(config, tmp_path / "split")
    assert first.fit(stop=StopAfter(7))["state"] == "stopped"   # 11 steps per epoch: stops inside epoch 1
    assert RunDir(tmp_path / "split").status()["state"] == "stopped"
    second = Trainer(config, tmp_path / "split")
    assert second.fit(resume=True)["state"] == "finished"

    for a, b in zip(weights(whole), weights(second)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for expected, got in zip(without_timing(RunDir(tmp_path / "whole").epochs()), without_timing(RunDir(tmp_path / "split").epochs())):
        assert got == pytest.approx(expected, rel=1e-4)
    assert len(RunDir(tmp_path / "split").steps()) == len(RunDir(tmp_path / "whole").steps())


def test_stop_request_file_stops_after_the_current_step(tmp_path):
    run = RunDir(tmp_path / "run")
    trainer = Trainer(tiny_config(epochs=3), run.path)

    class RequestOnSecondStep:
        def __init__(self):
            self.calls = 0

        def on_train_begin(self, info): ...
        def on_epoch_end(self, row): ...
        def on_train_end(self, summary): ...
        def on_step_end(self, row):
            run.request_stop()

    trainer.callbacks.append(RequestOnSecondStep())
    summary = trainer.fit()
    assert summary["state"] == "stopped"
    assert summary["global_step"] == 3  # the first metrics flush (log_every_steps=3) asked to stop
    assert run.latest_checkpoint() is not None
    resumed = Trainer(tiny_config(epochs=3), run.path).fit(resume=True)
    assert resumed["state"] == "finished" and resumed["global_step"] == 33


def test_a_stop_requested_while_the_trainer_starts_is_kept_and_a_stale_one_is_not(tmp_path):
    """Stop pressed while the run still loads its data (the file predates fit, not the process) stops it before
    its first step; a request left by an earlier, dead process does not stop the next one."""
    import os

    run = RunDir(tmp_path / "run")
    run.request_stop()
    summary = Trainer(tiny_config(epochs=1), run.path).fit()
    assert summary["state"] == "stopped" and summary["global_step"] == 0

    run.request_stop()
    os.utime(run.stop_path, (1_000_000_000, 1_000_000_000))   # made long before this process started
    summary = Trainer(tiny_config(epochs=1), run.path).fit(resume=True)
    assert summary["state"] == "finished" and not run.stop_path.exists()


def test_max_seconds_stops_cleanly_and_resumes(tmp_path):
    summary = Trainer(tiny_config(epochs=50), tmp_path / "run").fit(max_seconds=6)
    assert summary["state"] == "stopped"
    assert 0 < summary["global_step"] < 50 * 11
    assert RunDir(tmp_path / "run").latest_checkpoint() is not None


def test_nan_loss_stops_with_a_message_naming_the_step(tmp_path):
    from keras import ops

    trainer = Trainer(tiny_config(), tmp_path / "run")
    trainer.prepare()
    trainer.model.method.loss = lambda z1, z2: ops.log(ops.mean(z1) * 0.0 - 1.0)
    with pytest.raises(TrainingDiverged, match=r"at step 1 .*learning rate.*No checkpoint had been written yet"):
        trainer.fit()
    status = RunDir(tmp_path / "run").status()
    assert status["state"] == "failed" and "step 1" in status["message"]


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 5000}, "larger than the 1438 training images"),
    ({"learning_rate": -1.0}, "learning_rate must be positive"),
    ({"method": "nope"}, "Unknown method"),
    ({"encoder": "vgg"}, "Unknown encoder"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"precision": "fp8"}, "Unknown precision"),
    ({"image_size": 16}, "too small"),
])
def test_impossible_settings_are_rejected_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_config(**overrides), tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_config(), tmp_path / "missing").fit(resume=True)


def test_callbacks_stream_steps_and_epochs():
    seen = {"steps": [], "epochs": [], "begin": None, "end": None}

    class Recorder:
        def on_train_begin(self, info): seen["begin"] = info
        def on_step_end(self, row): seen["steps"].append(row["step"])
        def on_epoch_end(self, row): seen["epochs"].append(row["epoch"])
        def on_train_end(self, summary): seen["end"] = summary

    Trainer(tiny_config(), callbacks=[Recorder()]).fit()
    assert seen["steps"] == list(range(1, 23))
    assert seen["epochs"] == [1, 2]
    assert seen["begin"]["total_steps"] == 22 and seen["end"]["state"] == "finished"
