"""Data-parallel training: 4 devices give the loss and gradients of 1 device on the same global batch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sslcore.config import TrainConfig
from sslcore.distribute import check_batch_size
from sslcore.runs import RunDir
from tests.helpers import free_port, run_cli

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


# ---------------------------------------------------------------------------------------------- several hosts

HOST_FLAGS = ("train", "--backend", "jax", "--method", "simclr", "--image-size", "32", "--encoder-width", "16",
              "--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05", "--log-every", "1",
              "--max-steps", "3", "--no-progress")


def start_host(process_id, port, out, *extra):
    """One host of a two-host run: its own process, 2 CPU devices, JAX's distributed runtime on loopback."""
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": "jax", "JAX_NUM_CPU_DEVICES": "2",
           "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
           "KERAS_DISTRIBUTION_PROCESS_ID": str(process_id)}
    return subprocess.Popen([sys.executable, "-m", "sslcore", *HOST_FLAGS, "--devices", "0", "--out", str(out), *extra],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def two_hosts(tmp_path, host_one_extra=()):
    port = free_port()
    hosts = [start_host(0, port, tmp_path / "host0"), start_host(1, port, tmp_path / "host1", *host_one_extra)]
    return [(host.wait(timeout=600), *host.communicate()) for host in hosts]


@pytest.mark.slow
def test_two_hosts_train_as_one_process_on_the_global_batch(tmp_path):
    """Two processes × 2 CPU devices (JAX's distributed runtime on loopback, as two machines would run it) train three
    SimCLR steps on a global batch of 64; their losses and weights equal one process with one device."""
    for code, out, err in two_hosts(tmp_path):
        assert code == 0, err[-3000:]
    single = run_cli(*HOST_FLAGS, "--devices", "1", "--out", tmp_path / "single", env={"KERAS_BACKEND": "jax"})
    assert single.returncode == 0, single.stderr[-3000:]

    runs = {name: RunDir(tmp_path / name) for name in ("host0", "host1", "single")}
    losses = {name: [row["loss"] for row in run.steps()] for name, run in runs.items()}
    assert len(losses["single"]) == 3
    for host in ("host0", "host1"):
        assert losses[host] == pytest.approx(losses["single"], rel=1e-5), host
    assert len(set(losses["single"])) == 3, "each step trained the weights the next one used"
    weights = {name: RunDir.load_checkpoint(run.latest_checkpoint())[0] for name, run in runs.items()}
    for host in ("host0", "host1"):
        difference = max(float(np.max(np.abs(a - b))) for a, b in zip(weights[host], weights["single"]))
        assert difference < 1e-5, (host, difference)


@pytest.mark.slow
def test_hosts_that_disagree_on_the_seed_refuse_to_train(tmp_path):
    """A host with another seed would train every device on a slice of its own batch: a silent mixture."""
    for code, out, err in two_hosts(tmp_path, ("--seed", "1")):
        assert code == 2 and "every host must run the same command" in err, err[-3000:]
        assert "Traceback" not in err
