"""Run with JAX_NUM_CPU_DEVICES=4 KERAS_BACKEND=jax: for each method, the loss and every gradient on 4
devices against one device on the same global batch; then one full step's weights. Prints one JSON line."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sslcore.methods import METHODS  # noqa: E402
from sslcore.steps import DeviceData, make_train_step, to_host  # noqa: E402
from sslcore.trainer import Trainer  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402


def build(method, devices):
    # SGD: its update is proportional to the gradient, so equal weights after a step mean equal gradients
    # (Adam's first step is about lr·sign(g), which turns float noise on zero gradients into ±lr).
    trainer = Trainer(tiny_config(method=method, devices=devices, batch_size=64, optimizer="sgd", learning_rate=0.01))
    trainer.prepare()
    data = trainer.dataset
    step = make_train_step(trainer.model, trainer.optimizer, DeviceData.from_numpy(data.train_images, data.train_labels),
                           distribution=trainer.distribution)
    return trainer, step


def max_difference(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def relative_gradient_error(a, b):
    """Largest difference over the largest gradient, across all weights. (Per weight would divide float
    noise by float noise where the true gradient is 0, e.g. a bias before a batch standardisation.)"""
    scale = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(a))
    return max_difference(a, b) / scale


def main():
    indices = np.random.default_rng(0).permutation(1438)[:64].astype("int32")
    report = {"devices": len(jax.devices()), "methods": {}}
    # A few representative methods (argv), or all of them: in-batch negatives (simclr), a queue and a momentum
    # encoder (moco), batch statistics across devices (barlow_twins), a centre and a scheduled teacher (dino).
    for method in sys.argv[1:] or sorted(METHODS):
        _, single = build(method, 1)
        _, sharded = build(method, 4)
        loss_1, grads_1 = single.loss_and_gradients(indices)
        loss_4, grads_4 = sharded.loss_and_gradients(indices)
        metrics_1, metrics_4 = to_host(single(indices)), to_host(sharded(indices))
        report["methods"][method] = {
            "loss_single": float(loss_1), "loss_sharded": float(loss_4),
            "gradient_relative_error": relative_gradient_error(grads_1, grads_4),
            "step_loss_difference": abs(metrics_1["loss"] - metrics_4["loss"]),
            "weights_after_step_difference": max_difference(single.state[0], sharded.state[0]),
            "indices_sharding": str(sharded.placement.split_batch(indices).sharding.spec),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
