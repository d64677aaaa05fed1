"""Every registered method trains on digits without NaN, and its loss goes down on a fixed batch."""
import numpy as np
import pytest

from sslcore.methods import METHODS, method_class, method_params
from sslcore.steps import DeviceData, make_train_step, to_host
from sslcore.trainer import Trainer
from tests.helpers import tiny_config

pytestmark = pytest.mark.core


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
    trainer = Trainer(tiny_config(method=method, method_params=params, learning_rate=2e-3))
    trainer.prepare()
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
    assert np.isfinite(summary["loss"])


def test_moco_v3_has_no_queue_and_trains():
    summary = Trainer(tiny_config(method="moco", method_params={"version": "v3"}, epochs=1)).fit()
    assert np.isfinite(summary["loss"])


def test_moco_queue_is_first_in_first_out():
    trainer = Trainer(tiny_config(method="moco", method_params={"queue_size": 256}))
    trainer.prepare()
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


def test_momentum_encoder_moves_towards_online_encoder():
    from keras import ops
    from sslcore.methods.momentum import ema_update

    trainer = Trainer(tiny_config(method="moco", method_params={"momentum": 0.9}))
    trainer.prepare()
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


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_temperature_setting_must_be_positive(method):
    temperatures = [p["name"] for p in method_class(method).Params.describe() if p["name"].endswith("temperature")]
    for name in temperatures:
        with pytest.raises(ValueError, match=f"{name} must be positive"):
            method_params(method, {name: 0.0})


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
