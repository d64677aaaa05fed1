"""Method-specific behaviour of the methods added after the first three: DINO's centre, BYOL's momentum
schedule, NNCLR's support set, exact resume of a scheduled momentum method, and the documented settings."""
import math

import keras
import numpy as np
import pytest
from keras import ops

from sslcore import losses
from sslcore.methods import METHODS, method_params
from sslcore.methods.momentum import cosine_momentum
from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests.helpers import StopAfter, tiny_config

pytestmark = pytest.mark.core


def numpy(x):
    return ops.convert_to_numpy(x)


def prepared(method, **overrides):
    trainer = Trainer(tiny_config(method=method, **overrides))
    trainer.prepare()
    return trainer


def views(trainer, count=64):
    x = ops.cast(trainer.dataset.train_images[:count], "float32") / 255.0
    return trainer.model.augmenter(x, training=True), trainer.model.augmenter(x, training=True)


def test_every_setting_is_documented():
    for name, method in METHODS.items():
        for setting in method.Params.describe():
            assert setting["help"], f"{name}.{setting['name']} has no help text for the README table"
        assert method.description, name


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


def test_cosine_momentum_schedule():
    base = 0.99
    assert float(numpy(cosine_momentum(base, 0, 100))) == pytest.approx(base)
    assert float(numpy(cosine_momentum(base, 50, 100))) == pytest.approx((1 + base) / 2)
    assert float(numpy(cosine_momentum(base, 100, 100))) == pytest.approx(1.0)
    assert float(numpy(cosine_momentum(base, 25, 100))) == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2)
    assert float(numpy(cosine_momentum(base, 7, None))) == pytest.approx(base), "no run length: stays at base"


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


def test_byol_resume_mid_epoch_equals_uninterrupted_run(tmp_path):
    """The target network, the step counter of its momentum schedule and the predictor all live in the
    checkpoint: a run stopped inside an epoch and resumed ends with the same weights."""
    config = tiny_config(method="byol")
    whole = Trainer(config, tmp_path / "whole")
    whole.fit()
    first = Trainer(config, tmp_path / "split")
    assert first.fit(stop=StopAfter(7))["state"] == "stopped"
    second = Trainer(config, tmp_path / "split")
    assert second.fit(resume=True)["state"] == "finished"
    for a, b in zip(whole.model.variables, second.model.variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-4, atol=1e-5)
    for trainer in (whole, second):
        assert float(numpy(trainer.model.method.steps_done)) == trainer.total_steps == 22, "every step counted"
    assert float(numpy(whole.model.method.current_momentum())) == pytest.approx(1.0), "τ reaches 1 at the end"
    losses_whole = [row["loss"] for row in RunDir(tmp_path / "whole").epochs()]
    losses_split = [row["loss"] for row in RunDir(tmp_path / "split").epochs()]
    assert losses_split == pytest.approx(losses_whole, rel=1e-4)
