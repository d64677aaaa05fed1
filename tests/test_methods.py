"""The methods: every registered one trains on digits without NaN and its loss goes down on a fixed batch; then
each method's own behaviour (MoCo's queue, DINO's centre, BYOL's and DINO's momentum schedule and its exact
resume, NNCLR's support set) and the documented settings.

The backend-sensitive tests are marked ``core`` one by one: the full-epoch check of all eleven methods runs on
TensorFlow only (the fixed-batch check, on every backend, already runs each method's compiled step)."""
import math

import keras
import numpy as np
import pytest
from keras import ops

from sslcore import losses
from sslcore.methods import METHODS, method_class, method_params
from sslcore.methods.momentum import cosine_momentum
from sslcore.runs import RunDir
from sslcore.steps import DeviceData, make_train_step, to_host
from sslcore.trainer import Trainer
from tests.helpers import StopAfter, tiny_config

core = pytest.mark.core


def numpy(x):
    return ops.convert_to_numpy(x)


def prepared(method, **overrides):
    trainer = Trainer(tiny_config(method=method, **overrides))
    trainer.prepare()
    return trainer


def views(trainer, count=64):
    x = ops.cast(trainer.dataset.train_images[:count], "float32") / 255.0
    return trainer.model.augmenter(x, training=True), trainer.model.augmenter(x, training=True)


@core
@pytest.mark.parametrize("method", sorted(METHODS))
def test_loss_decreases_on_a_fixed_batch(method):
    # MoCo v2 on one repeated batch fills its queue with that batch's own keys (its positives become
    # negatives), so its loss must rise; the queue-free v3 form is the fair check of its learning.
    # DINO's target moves while its centre warms up from zero towards the teacher's mean output (≈ 1/(1 − m)
    # steps): the centring takes away the very component the student first learns to match, so the loss
    # rises. With centre momentum 0 the centre is the previous batch's teacher mean from the second step
    # on, a fixed objective from then: its loss must fall from there.
    # (NNCLR needs nothing: its support set holds this batch's own past embeddings, but they are anchors,
    # not negatives, and each view still has to single out its own twin.)
    params = {"moco": {"version": "v3"}, "dino": {"center_momentum": 0.0}}.get(method, {})
    first = 1 if method == "dino" else 0
    trainer = prepared(method, method_params=params, learning_rate=2e-3)
    data = trainer.dataset
    step = make_train_step(trainer.model, trainer.optimizer, DeviceData.from_numpy(data.train_images, data.train_labels))
    batch = np.arange(128, dtype="int32")
    history = [to_host(step(batch)) for _ in range(12)]
    losses = [row["loss"] for row in history]
    assert all(np.isfinite(list(row.values())).all() for row in history)
    assert np.mean(losses[-3:]) < losses[first], losses


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_an_epoch_with_finite_metrics(method):
    summary = Trainer(tiny_config(method=method, epochs=1)).fit()
    assert summary["state"] == "finished"
    assert all(np.isfinite(summary[key]) for key in ("loss", "probe_accuracy", "knn_accuracy")), summary


def queue_variables(trainer):
    return [v.path for v in trainer.model.variables if "queue" in v.path]


@core
def test_moco_v3_has_no_queue_and_uses_in_batch_negatives():
    v3 = prepared("moco", method_params={"version": "v3"})
    assert queue_variables(v3) == [] and getattr(v3.model.method, "key_queue", None) is None
    assert queue_variables(prepared("moco", method_params={"queue_size": 256})), "v2 keeps its queue (the check sees one)"
    # Its loss is the symmetric in-batch InfoNCE of queries against the other view's momentum keys.
    moco = v3.model.method
    view1, view2 = views(v3)
    output = moco.compute(v3.model.encoder, view1, view2)
    t = moco.params.temperature
    query2 = moco.projection_head(v3.model.encoder(view2, training=True), training=True)
    key1 = moco.keys(view1, True)
    expected = (float(numpy(losses.in_batch_info_nce(output.z1, output.z2, t)))
                + float(numpy(losses.in_batch_info_nce(query2, key1, t)))) / 2
    assert float(numpy(output.loss)) == pytest.approx(expected, rel=1e-4)


@core
def test_moco_queue_is_first_in_first_out():
    trainer = prepared("moco", method_params={"queue_size": 256})
    moco = trainer.model.method
    from keras import ops
    before = ops.convert_to_numpy(moco.queue)
    keys = np.eye(128, moco.params.projection_dim, dtype="float32")
    moco.enqueue(keys)
    after = ops.convert_to_numpy(moco.queue)
    np.testing.assert_allclose(after[:128], keys, atol=1e-6)
    np.testing.assert_allclose(after[128:], before[:128], atol=1e-6)
    assert float(ops.convert_to_numpy(moco.queue_filled)) == 128
    moco.enqueue(keys)
    moco.enqueue(keys)
    assert float(ops.convert_to_numpy(moco.queue_filled)) == 256, "the fill count stops at the queue size"


@core
def test_empty_queue_slots_are_not_negatives():
    from sslcore import losses

    q = np.eye(4, dtype="float32")[:2]
    queue = np.concatenate([np.eye(4, dtype="float32")[2:], np.tile(q[:1], (5, 1))])  # 5 slots that would be hard negatives
    mask = np.array([True, True] + [False] * 5)
    masked = float(losses.info_nce(q, q, queue, 0.1, queue_mask=mask))
    assert masked == pytest.approx(float(losses.info_nce(q, q, queue[:2], 0.1)), abs=1e-6)


def test_moco_queue_size_auto_fits_the_data():
    assert method_params("moco", {}, batch_size=128, num_images=1438).queue_size == 719
    assert method_params("moco", {}, batch_size=256, num_images=50000).queue_size == 4096
    assert method_params("moco", {"queue_size": 1000}, batch_size=256, num_images=1438).queue_size == 1000


@core
def test_momentum_encoder_moves_towards_online_encoder():
    from keras import ops
    from sslcore.methods.momentum import ema_update

    trainer = prepared("moco", method_params={"momentum": 0.9})
    moco, online = trainer.model.method, trainer.model.encoder
    target_kernel = moco.momentum_encoder.trainable_weights or [w for w in moco.momentum_encoder.weights]
    online_kernel = online.trainable_weights[0]
    online_kernel.assign(ops.convert_to_numpy(online_kernel) + 1.0)
    before = ops.convert_to_numpy(target_kernel[0])
    ema_update(moco.momentum_encoder, online, 0.9)
    after = ops.convert_to_numpy(target_kernel[0])
    np.testing.assert_allclose(after, 0.9 * before + 0.1 * ops.convert_to_numpy(online_kernel), atol=1e-5)
    assert not moco.momentum_encoder.trainable_variables, "the momentum encoder must get no gradient"


def test_method_params_validation():
    with pytest.raises(ValueError, match="temperature must be positive"):
        method_params("simclr", {"temperature": 0})
    with pytest.raises(ValueError, match="Unknown setting"):
        method_params("simclr", {"temprature": 0.1})
    with pytest.raises(ValueError, match="queue_size"):
        method_params("moco", {"queue_size": 64}, batch_size=128)
    with pytest.raises(ValueError, match="Unknown method"):
        method_class("simclrr")
    assert method_params("simclr", {"temperature": "0.2"}).temperature == 0.2


TEMPERATURES = [(method, p["name"]) for method in sorted(METHODS) for p in method_class(method).Params.describe()
                if p["name"].endswith("temperature")]


def test_the_methods_with_a_temperature_are_the_ones_expected():
    """The parametrisation below must not shrink quietly: these are the methods with softmax temperatures."""
    assert TEMPERATURES == [("dcclr", "temperature"), ("dino", "teacher_temperature"), ("dino", "student_temperature"),
                            ("moco", "temperature"), ("nnclr", "temperature"), ("simclr", "temperature")]


@pytest.mark.parametrize("method, name", TEMPERATURES)
def test_every_temperature_setting_must_be_positive(method, name):
    with pytest.raises(ValueError, match=f"{name} must be positive"):
        method_params(method, {name: 0.0})
    assert getattr(method_params(method, {name: 0.3}), name) == 0.3


def test_simclr_defaults_are_the_recipe_the_benchmark_calls_the_default(monkeypatch):
    # docs/benchmarks.md's default-recipe table says which recipe of benchmarks/recipe_cifar.py ships; the shipped
    # SimCLR settings must be that recipe's, and the script's baseline must stay the seeds' own.
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_cifar.py"
    monkeypatch.syspath_prepend(str(script.parent))  # the script imports its neighbour audit_cifar
    spec = importlib.util.spec_from_file_location("recipe_cifar", script)
    recipe_cifar = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe_cifar)
    chosen = recipe_cifar.settings(recipe_cifar.DEFAULT_RECIPE, 20)["method_params"]
    shipped = method_params("simclr", {})
    assert {name: getattr(shipped, name) for name in chosen} == chosen
    seeds = recipe_cifar.settings("seeds", 20)["method_params"]
    assert (seeds["temperature"], seeds["hidden_dim"]) == (0.1, 128)
    # The 10-minute winner made the training defaults: on CIFAR-10's 40,000 images they train the same run.
    from sslcore.config import TrainConfig

    measured, shipped = (TrainConfig(**recipe_cifar.settings(name, 20)) for name in
                         ("batch512_cooldown_simclr_colour", "defaults"))
    assert (measured.batch_size, measured.schedule, measured.full_augment()) == \
        (shipped.batch_size_for(40000), shipped.schedule, shipped.full_augment())
    assert measured.full_method_params() == shipped.full_method_params()


# ---------------------------------------------------------------------------------------------- per method


def test_every_setting_is_documented():
    for name, method in METHODS.items():
        for setting in method.Params.describe():
            assert setting["help"], f"{name}.{setting['name']} has no help text for the README table"
        assert method.description, name


@core
def test_dino_centre_is_an_ema_of_the_teacher_mean():
    trainer = prepared("dino", method_params={"center_momentum": 0.8})
    dino = trainer.model.method
    view1, view2 = views(trainer)
    assert np.all(numpy(dino.center) == 0)
    centres = []
    for _ in range(3):
        before = numpy(dino.center)
        dino.compute(trainer.model.encoder, view1, view2)
        # The teacher has just been updated inside compute; its outputs now are the ones the centre averaged.
        mean = np.mean(np.concatenate([numpy(dino.teacher(view1, True)), numpy(dino.teacher(view2, True))]), axis=0)
        np.testing.assert_allclose(numpy(dino.center), 0.8 * before + 0.2 * mean, atol=1e-5)
        centres.append(np.linalg.norm(numpy(dino.center) - mean))
    assert centres[2] < centres[1] < centres[0], "the centre moves towards the teacher's mean output"
    assert not dino.teacher_encoder.trainable_variables and not dino.teacher_head.trainable_variables


@core
def test_cosine_momentum_schedule():
    base = 0.99
    assert float(numpy(cosine_momentum(base, 0, 100))) == pytest.approx(base)
    assert float(numpy(cosine_momentum(base, 50, 100))) == pytest.approx((1 + base) / 2)
    assert float(numpy(cosine_momentum(base, 100, 100))) == pytest.approx(1.0)
    assert float(numpy(cosine_momentum(base, 25, 100))) == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2)
    assert float(numpy(cosine_momentum(base, 7, None))) == pytest.approx(base), "no run length: stays at base"


@core
def test_byol_target_follows_the_scheduled_momentum():
    trainer = prepared("byol", method_params={"momentum": 0.9})
    byol, online = trainer.model.method, trainer.model.encoder
    assert byol.total_steps == trainer.total_steps == 22, "the trainer tells the method the run's length"
    assert not byol.target_encoder.trainable_variables
    byol.steps_done.assign(11.0)                                 # half way: τ = (1 + 0.9) / 2
    kernel = online.trainable_weights[0]
    kernel.assign(numpy(kernel) + 1.0)
    before = numpy(byol.target_encoder.weights[0])
    view1, view2 = views(trainer, 32)
    byol.compute(online, view1, view2)
    np.testing.assert_allclose(numpy(byol.target_encoder.weights[0]), 0.95 * before + 0.05 * numpy(kernel), atol=1e-5)
    assert float(numpy(byol.steps_done)) == 12.0


@core
def test_nnclr_looks_up_before_the_batch_joins_the_support_set():
    trainer = prepared("nnclr", method_params={"queue_size": 256})
    nnclr = trainer.model.method
    view1, view2 = views(trainer)
    # An empty support set: each view is its own neighbour, so the loss is in-batch InfoNCE.
    output = nnclr.compute(trainer.model.encoder, view1, view2)
    z1, z2 = numpy(output.z1), numpy(output.z2)
    in_batch = (float(numpy(losses.in_batch_info_nce(z1, z2, 0.1))) + float(numpy(losses.in_batch_info_nce(z2, z1, 0.1)))) / 2
    assert float(numpy(output.loss)) == pytest.approx(in_batch, rel=1e-4)
    # Then the first view's projections joined the support set, newest first.
    assert float(numpy(nnclr.support_set.filled)) == 64
    np.testing.assert_allclose(numpy(nnclr.support_set.vectors)[:64], numpy(losses.l2_normalize(z1)), atol=1e-5)
    # Next step: the anchors are those stored vectors, each view's nearest one.
    stored = numpy(nnclr.support_set.vectors)[:64]
    output = nnclr.compute(trainer.model.encoder, view1, view2)
    nearest = numpy(losses.nearest_neighbours(output.z1, stored))
    expected = (float(numpy(losses.in_batch_info_nce(nearest, output.z2, 0.1)))
                + float(numpy(losses.in_batch_info_nce(numpy(losses.nearest_neighbours(output.z2, stored)), output.z1, 0.1)))) / 2
    assert float(numpy(output.loss)) == pytest.approx(expected, rel=1e-4)


def test_nnclr_support_set_size_auto_fits_the_data():
    assert method_params("nnclr", {}, batch_size=128, num_images=1438).queue_size == 719
    assert method_params("nnclr", {}, batch_size=256, num_images=50000).queue_size == 10000
    assert method_params("nnclr", {"queue_size": 3000}, batch_size=256, num_images=1438).queue_size == 3000
    with pytest.raises(ValueError, match="queue_size"):
        method_params("nnclr", {"queue_size": 64}, batch_size=128)


def momentum_now(method):
    return float(numpy(cosine_momentum(method.params.momentum, method.steps_done, method.total_steps)))


@core
@pytest.mark.parametrize("method", ["byol", "dino"])
def test_a_momentum_schedule_resumes_mid_epoch_exactly(tmp_path, method):
    """The target (BYOL) or teacher (DINO) network, the step counter of its momentum schedule, the predictor and
    DINO's centre all live in the checkpoint: a run stopped inside an epoch and resumed ends with the same weights."""
    config = tiny_config(method=method, epochs=1, encoder_width=16)   # 11 steps
    whole = Trainer(config, tmp_path / "whole")
    whole.fit()
    first = Trainer(config, tmp_path / "split")
    assert first.fit(stop=StopAfter(5))["state"] == "stopped"
    assert float(numpy(first.model.method.steps_done)) == 5, "the schedule stopped at the stop step"
    second = Trainer(config, tmp_path / "split")
    second.prepare()
    second.restore(RunDir(tmp_path / "split").latest_checkpoint())
    assert momentum_now(second.model.method) == pytest.approx(
        float(numpy(cosine_momentum(method_params(method, {}).momentum, 5, 11)))), "the schedule resumes at step 5"
    assert second.fit(resume=True)["state"] == "finished"
    for a, b in zip(whole.model.variables, second.model.variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-4, atol=1e-5)
    for trainer in (whole, second):
        assert float(numpy(trainer.model.method.steps_done)) == trainer.total_steps == 11, "every step counted"
    assert momentum_now(whole.model.method) == pytest.approx(1.0), "τ reaches 1 at the end"
    losses_whole = [row["loss"] for row in RunDir(tmp_path / "whole").epochs()]
    losses_split = [row["loss"] for row in RunDir(tmp_path / "split").epochs()]
    assert losses_split == pytest.approx(losses_whole, rel=1e-4)
