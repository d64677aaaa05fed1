"""Data-parallel training: 4 devices give the loss and gradients of 1 device on the same global batch."""
import json
import os
import subprocess
import sys

import pytest

from sslcore.config import TrainConfig
from sslcore.distribute import check_batch_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# One method of each kind of cross-example coupling, not all eleven (each one builds and compiles two trainers):
# in-batch negatives, a key queue with a momentum encoder, cross-correlation batch statistics, a teacher centre.
REPRESENTATIVE = ["simclr", "moco", "barlow_twins", "dino"]


@pytest.mark.slow
def test_four_devices_equal_one_device_on_the_global_batch():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_NUM_CPU_DEVICES": "4", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distributed_check.py"), *REPRESENTATIVE], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and sorted(report["methods"]) == sorted(REPRESENTATIVE)
    for method, figures in report["methods"].items():
        assert "'batch'" in figures["indices_sharding"], method
        # The loss is computed over the global batch: with negatives only from its own device each
        # shard would see 16 images, and an NT-Xent of batch 16 differs from one of batch 64 by a lot.
        assert figures["loss_sharded"] == pytest.approx(figures["loss_single"], rel=1e-5), method
        assert figures["gradient_relative_error"] < 1e-5, method
        assert figures["step_loss_difference"] < 1e-5 * abs(figures["loss_single"]), method
        assert figures["weights_after_step_difference"] < 1e-5, method


def test_batch_must_divide_over_devices():
    class FourDevices:
        class device_mesh:
            shape = (4,)

    with pytest.raises(ValueError, match="multiple of 4"):
        check_batch_size(FourDevices, 130)
    check_batch_size(FourDevices, 128)


def test_devices_setting_is_validated():
    with pytest.raises(ValueError, match="devices must be"):
        TrainConfig(devices=-1).validate()
