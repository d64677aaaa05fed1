"""The trainer: run folder contents, exact resume, cooperative stop, time budget, NaN and bad settings."""
import json
import time

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


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """One finished run of tiny_config() (2 epochs) and its summary, shared by the tests that only read it: each
    training run costs seconds, on every backend."""
    trainer = Trainer(tiny_config(), tmp_path_factory.mktemp("two-epochs") / "run")
    return trainer, trainer.fit()


def test_run_folder_holds_everything(two_epochs):
    trainer, summary = two_epochs
    run = trainer.run
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


def test_saved_encoder_loads_with_plain_keras_and_matches(tiny_trainer):
    trainer = tiny_trainer
    images = trainer.dataset.test_images[:16]
    encoder = keras.saving.load_model(trainer.run.encoder_path)
    np.testing.assert_allclose(encoder.predict(images.astype("float32"), verbose=0), trainer.embed(images), atol=1e-4)
    classifier = keras.saving.load_model(trainer.run.classifier_path)
    probabilities = classifier.predict(images.astype("float32"), verbose=0)
    assert probabilities.shape == (16, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_saved_classifier_reproduces_the_reported_probe_accuracy(two_epochs):
    """The classifier users get is the probe the run measured, not one with stale normalisation statistics."""
    trainer, _ = two_epochs
    classifier = keras.saving.load_model(trainer.run.classifier_path)
    data = trainer.dataset
    probabilities = classifier.predict(data.test_images.astype("float32"), verbose=0)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == data.test_labels))
    assert accuracy == pytest.approx(trainer.run.epochs()[-1]["probe_accuracy"], abs=1e-6)
    assert accuracy > 0.3
    assert np.mean(np.max(probabilities, axis=1)) > 0.15, "more confident than uniform (0.1)"
    # The probe standardises with the statistics of clean labelled features, not lagging moving averages.
    standardize = trainer.model.linear_probe.get_layer("linear_probe_standardize")
    bank = trainer.embed(data.labelled_images[trainer.bank_index])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(standardize.moving_mean), bank.mean(axis=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path, request, method):
    config = tiny_config(method=method, method_params={"queue_size": 256} if method == "moco" else {})
    if config == tiny_config():   # SimCLR's uninterrupted run is the shared one
        whole, _ = request.getfixturevalue("two_epochs")
    else:
        whole = Trainer(config, tmp_path / "whole")
        whole.fit()

    first = Trainer(config, tmp_path / "split")
    assert first.fit(stop=StopAfter(7))["state"] == "stopped"   # 11 steps per epoch: stops inside epoch 1
    assert RunDir(tmp_path / "split").status()["state"] == "stopped"
    second = Trainer(config, tmp_path / "split")
    assert second.fit(resume=True)["state"] == "finished"

    for a, b in zip(weights(whole), weights(second)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for expected, got in zip(without_timing(whole.run.epochs()), without_timing(RunDir(tmp_path / "split").epochs())):
        assert got == pytest.approx(expected, rel=1e-4)
    assert len(RunDir(tmp_path / "split").steps()) == len(whole.run.steps())


def test_a_run_stopped_mid_way_is_usable_and_resuming_replaces_its_models(tmp_path):
    """--max-steps (as Stop and --max-seconds) leaves encoder.keras and classifier.keras of the last checkpoint,
    marked as stopped at that step; the resumed run finishes exactly as before and replaces them."""
    from sslcore.run import Run

    config = tiny_config(epochs=2)   # 11 steps per epoch
    run = RunDir(tmp_path / "run")
    first = Trainer(config, run.path)
    summary = first.fit(max_steps=7)
    assert summary["state"] == "stopped" and summary["global_step"] == 7 and summary["total_steps"] == 22
    assert run.encoder_path.exists() and run.classifier_path.exists()
    assert run.stopped_text() == "stopped at step 7 of 22" and "stopped at step 7 of 22" in run.status()["message"]

    stopped = Run(run.path)
    assert stopped.stopped == {"step": 7, "total_steps": 22, "epoch": 0, "epochs": 2}
    assert stopped.state_text == "stopped at step 7 of 22"
    images = first.dataset.test_images[:16]
    stopped_features = stopped.embed(images)
    np.testing.assert_allclose(stopped_features, first.embed(images), atol=1e-4)
    assert stopped.model().predict(images).shape == (16, 10)
    # Mid-epoch, the exported probe standardises with the clean bank's statistics, not the lagging moving averages.
    standardize = next(layer for layer in stopped.classifier._flatten_layers() if layer.name == "linear_probe_standardize")
    bank = first.embed(first.dataset.labelled_images[first.bank_index])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(standardize.moving_mean), bank.mean(axis=0), rtol=1e-4, atol=1e-5)
    saved_weights = weights(first)   # exporting left the weights in memory as checkpointed: the run resumes exactly

    second = Trainer(config, run.path)
    second.prepare()
    second.restore(run.latest_checkpoint())
    for a, b in zip(saved_weights, weights(second)):
        np.testing.assert_array_equal(a, b)
    assert second.fit(resume=True)["state"] == "finished"
    finished = Run(run.path)
    assert finished.stopped is None and finished.state_text == "finished" and run.stopped_text() is None
    np.testing.assert_allclose(finished.embed(images), second.embed(images), atol=1e-4)
    assert not np.allclose(finished.embed(images), stopped_features, atol=1e-3), "the final encoder replaced it"


def test_a_run_stopped_before_its_first_step_has_nothing_to_load(tmp_path):
    from sslcore.run import Run, RunNotFinished

    run = RunDir(tmp_path / "run")
    run.request_stop()
    assert Trainer(small_config(epochs=1), run.path, dataset=small_dataset()).fit()["global_step"] == 0
    assert not run.encoder_path.exists() and run.stopped_text() is None
    with pytest.raises(RunNotFinished, match="has not finished"):
        Run(run.path)


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


class SlowSteps:
    """A callback that makes every step take at least ``seconds``: a run long enough for a time budget to cut."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_train_begin(self, info): ...
    def on_epoch_end(self, row): ...
    def on_train_end(self, summary): ...
    def on_step_end(self, row):
        time.sleep(self.seconds)


def test_max_seconds_stops_cleanly_before_the_limit_and_resumes(tmp_path):
    # 33 steps of at least 0.5 s: 16.5 s or more. The 10 s budget leaves room for the first step's compilation on a
    # busy machine (the trainer cannot stop before one step has told it how long a step takes; the test command runs
    # two test processes at once).
    config = tiny_config(epochs=3, log_every_steps=1)
    trainer = Trainer(config, tmp_path / "run", callbacks=[SlowSteps(0.5)])
    trainer.prepare()                                           # the budget is the training's, not the data loading's
    started = time.perf_counter()
    summary = trainer.fit(max_seconds=10)
    elapsed = time.perf_counter() - started
    assert summary["state"] == "stopped" and summary["stop_reason"] == "time"
    assert elapsed < 10, f"--max-seconds 10 took {elapsed:.1f} s"
    assert 0 < summary["global_step"] < 33
    run = RunDir(tmp_path / "run")
    assert run.latest_checkpoint().name == f"ckpt-{summary['global_step']:08d}.npz", "the checkpoint of the stop step"
    assert f"stopped at step {summary['global_step']} of 33 (its time limit)" in run.status()["message"]

    resumed = Trainer(config, tmp_path / "run").fit(resume=True)
    assert resumed["state"] == "finished" and resumed["global_step"] == 33
    assert [row["step"] for row in run.steps()] == list(range(1, 34)), "every step once, the stopped ones included"
    assert [row["epoch"] for row in run.epochs()] == [1, 2, 3]


def test_nan_loss_stops_with_a_message_naming_the_step(tmp_path):
    from keras import ops

    trainer = Trainer(tiny_config(), tmp_path / "run")
    trainer.prepare()
    trainer.model.method.loss = lambda z1, z2: ops.log(ops.mean(z1) * 0.0 - 1.0)
    with pytest.raises(TrainingDiverged, match=r"at step 1 .*learning rate.*No checkpoint had been written yet"):
        trainer.fit()
    status = RunDir(tmp_path / "run").status()
    assert status["state"] == "failed" and "step 1" in status["message"]


def test_a_nan_loss_leaves_the_last_checkpoint_intact_and_resumable(tmp_path):
    from keras import ops

    config = tiny_config(epochs=2)
    run = RunDir(tmp_path / "run")
    assert Trainer(config, run.path).fit(max_steps=11)["global_step"] == 11      # epoch 1 and its checkpoint
    saved = run.checkpoints()
    assert [path.name for path in saved] == ["ckpt-00000011.npz"]
    saved_bytes = saved[0].read_bytes()

    diverging = Trainer(config, run.path)
    diverging.prepare()
    diverging.model.method.loss = lambda z1, z2: ops.log(ops.mean(z1) * 0.0 - 1.0)
    with pytest.raises(TrainingDiverged, match=r"at step 12 .*The checkpoint of step 11 is intact"):
        diverging.fit(resume=True)
    assert run.checkpoints() == saved and saved[0].read_bytes() == saved_bytes, "no NaN weights were saved"
    assert run.status()["state"] == "failed"

    resumed = Trainer(config, run.path).fit(resume=True)
    assert resumed["state"] == "finished" and np.isfinite(resumed["loss"])
    assert [row["step"] for row in run.steps()] == list(range(1, 23))


def small_dataset(count=16, size=32):
    """Random pictures of two classes: 2 steps an epoch at batch 8, for checks of the loop rather than learning."""
    from sslcore.data import Dataset

    images = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    labels = np.arange(count) % 2
    return Dataset(name="random", train_images=images, train_labels=labels, test_images=images[:8],
                   test_labels=labels[:8], class_names=["a", "b"])


def small_config(**overrides):
    return tiny_config(**{"encoder_width": 16, "batch_size": 8, "knn_bank_size": 8, "eval_size": 8, "log_every_steps": 1,
                          **overrides})


def test_keep_checkpoints_prunes_all_but_the_newest(tmp_path):
    run = RunDir(tmp_path / "run")
    Trainer(small_config(epochs=4, keep_checkpoints=2), run.path, dataset=small_dataset()).fit()
    assert [path.name for path in run.checkpoints()] == ["ckpt-00000006.npz", "ckpt-00000008.npz"]
    everything = RunDir(tmp_path / "all")
    for step in range(1, 5):
        everything.save_checkpoint(step, [np.zeros(1)], [], {}, keep=0)
    assert len(everything.checkpoints()) == 4, "0 keeps every checkpoint"
    from sslcore.cli import build_parser
    from sslcore.commands.options import config_values

    parsed = build_parser().parse_args(["train", "--keep-checkpoints", "5", "--out", "-"])
    assert config_values(parsed)["keep_checkpoints"] == 5


@pytest.mark.parametrize("precision, compute", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_mixed_precision_trains_in_the_low_precision_with_float32_weights(tmp_path, precision, compute):
    trainer = Trainer(small_config(epochs=1, precision=precision), tmp_path / "run", dataset=small_dataset())
    trainer.prepare()
    convolutions = [layer for layer in trainer.model.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and all(layer.compute_dtype == compute for layer in convolutions)
    assert all(v.dtype == "float32" for v in trainer.model.encoder.trainable_variables), "weights stay float32"
    before = weights(trainer)
    summary = trainer.fit()
    assert summary["state"] == "finished" and np.isfinite(summary["loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights(trainer))), "the weights were trained"
    # The exports compute in float32 (the same on every backend and CPU) with the trained weights.
    pixels = small_dataset().test_images[:4].astype("float32")
    for name, in_training in (("encoder", trainer.model.feature_extractor()), ("classifier", trainer.model.classifier())):
        exported = keras.saving.load_model(tmp_path / "run" / f"{name}.keras")
        policies = {layer.dtype_policy.name for layer in _all_layers(exported)}
        assert policies == {"float32"}, f"{name}.keras computes in {policies}"
        low, full = in_training.predict(pixels, verbose=0), exported.predict(pixels, verbose=0)
        assert full.dtype == np.float32
        np.testing.assert_allclose(full, low, atol=0.05 * np.abs(full).max())   # the same model, rounded differently
        if name == "encoder":
            assert not np.array_equal(full, low), "the export is not the low-precision model itself"


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def learning_rates(config, steps):
    from sslcore.trainer import build_optimizer

    optimizer = build_optimizer(config, total_steps=steps, steps_per_epoch=steps // config.epochs)
    schedule = optimizer._learning_rate
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return optimizer, [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(steps + 1)]
    return optimizer, [float(keras.ops.convert_to_numpy(optimizer.learning_rate))] * (steps + 1)


def test_schedules_cosine_with_linear_warm_up_and_constant():
    _, cosine = learning_rates(tiny_config(epochs=4, learning_rate=0.1, schedule="cosine"), 40)
    assert cosine[0] == pytest.approx(0.1) and cosine[20] == pytest.approx(0.05, abs=1e-6) and cosine[40] == pytest.approx(0)
    assert all(a >= b for a, b in zip(cosine, cosine[1:])), "cosine only decays"
    _, warm = learning_rates(tiny_config(epochs=4, learning_rate=0.1, warmup_epochs=1, schedule="cosine"), 40)   # 10 warm-up steps
    assert warm[0] == pytest.approx(0) and warm[5] == pytest.approx(0.05) and warm[10] == pytest.approx(0.1)
    assert warm[25] == pytest.approx(0.05, abs=1e-6) and warm[40] == pytest.approx(0, abs=1e-7)
    _, constant = learning_rates(tiny_config(epochs=4, learning_rate=0.1, schedule="constant"), 40)
    assert constant == pytest.approx([0.1] * 41)
    # The default: the peak for four fifths of the steps, then linear to 0 at the last.
    _, cooldown = learning_rates(tiny_config(epochs=4, learning_rate=0.1), 40)
    assert cooldown[:33] == pytest.approx([0.1] * 33) and cooldown[36] == pytest.approx(0.05) and cooldown[40] == pytest.approx(0)


def test_the_step_rows_record_the_scheduled_learning_rate(tmp_path):
    config = small_config(epochs=2, learning_rate=0.01, warmup_epochs=1, schedule="cosine")   # 4 steps: 2 warming up, 2 decaying
    Trainer(config, tmp_path / "run", dataset=small_dataset()).fit()
    rates = [row["learning_rate"] for row in RunDir(tmp_path / "run").steps()]
    assert rates == pytest.approx([0.0, 0.005, 0.01, 0.005], abs=1e-7)


@pytest.mark.parametrize("name, kind", [("adam", "Adam"), ("adamw", "AdamW"), ("sgd", "SGD")])
def test_optimizers_and_weight_decay(name, kind):
    config = tiny_config(optimizer=name, learning_rate=0.1, weight_decay=0.5, schedule="constant")
    optimizer, _ = learning_rates(config, 10)
    assert type(optimizer).__name__ == kind
    variable = keras.Variable(np.full((3,), 2.0, "float32"))
    optimizer.apply_gradients([(keras.ops.zeros((3,)), variable)])
    value = keras.ops.convert_to_numpy(variable)
    if name == "adam":
        np.testing.assert_allclose(value, 2.0, atol=1e-6)           # plain Adam has no decay; a zero gradient moves nothing
    else:
        np.testing.assert_allclose(value, 2.0 * (1 - 0.1 * 0.5), atol=1e-5)   # decoupled decay: w -= lr · wd · w
    if name == "sgd":
        assert optimizer.momentum == pytest.approx(0.9)


def test_optimizer_flags_reach_the_config():
    from sslcore.cli import build_parser
    from sslcore.commands.options import config_values

    parsed = build_parser().parse_args(["train", "--optimizer", "adamw", "--weight-decay", "0.05", "--schedule",
                                        "constant", "--warmup-epochs", "1.5", "--precision", "bf16", "--out", "-"])
    values = config_values(parsed)
    assert {k: values[k] for k in ("optimizer", "weight_decay", "schedule", "warmup_epochs", "precision")} == \
        {"optimizer": "adamw", "weight_decay": 0.05, "schedule": "constant", "warmup_epochs": 1.5, "precision": "bf16"}


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


def test_an_unset_batch_size_is_512_or_a_quarter_of_a_small_training_set():
    from sslcore.config import automatic_batch_size

    assert [automatic_batch_size(n) for n in (40000, 2048, 1438, 245, 16, 3)] == [512, 512, 256, 32, 4, 2]


def test_a_run_keeps_the_batch_size_it_chose_for_its_data(tmp_path):
    """Unset, the batch fits the data (16 images: 4, so 4 steps an epoch) and config.json keeps it for resumes."""
    run = RunDir(tmp_path / "run")
    Trainer(small_config(epochs=1, batch_size=None, precision="auto"), run.path, dataset=small_dataset(16)).fit()
    assert run.config()["batch_size"] == 4
    assert [row["step"] for row in run.steps()][-1] == 4
    # So does the precision "auto" chose for this device.
    from sslcore.backend import default_precision

    assert run.config()["precision"] == default_precision(keras.backend.backend())[0]


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
