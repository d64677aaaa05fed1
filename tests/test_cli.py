"""The command line as a user runs it: a subprocess per command, JSON on the last stdout line."""
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT, run_cli  # noqa: F401

pytestmark = pytest.mark.slow


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_digit_folders(root, split):
    """Labelled class-per-subfolder folders of real digits, as a user's eval set would look."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.images))
    chosen = order[:300] if split == "train" else order[300:450]
    for n, index in enumerate(chosen):
        folder = root / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[index] * 255 / 16).astype("uint8")
        Image.fromarray(pixels, "L").resize((32, 32)).save(folder / f"{n}.png")
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-simclr"
    result = run_cli("train", "--method", "simclr", "--encoder", "convnet", "--data", "digits", "--epochs", 2,
                     "--batch-size", 128, "--encoder-width", 32, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def test_train_writes_run_and_prints_summary(trained_run):
    out, result = trained_run
    summary = last_json(result)
    assert summary["state"] == "finished" and summary["epochs_completed"] == 2
    assert "epoch 2:" in result.stderr and "kNN acc" in result.stderr  # the progress lines
    for name in ("config.json", "metrics.jsonl", "encoder.keras", "checkpoints"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"epoch", "loss", "contrastive_accuracy", "probe_accuracy", "knn_accuracy", "images_per_second", "seconds"} <= set(rows[0])


def test_eval_on_labelled_folders(trained_run, tmp_path):
    out, _ = trained_run
    train = write_digit_folders(tmp_path / "train", "train")
    test = write_digit_folders(tmp_path / "test", "test")
    result = run_cli("eval", "--run", out, "--train", f"folder:{train}", "--test", f"folder:{test}")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = last_json(result)
    assert figures["train_images"] == 300 and figures["test_images"] == 150
    assert figures["knn_accuracy"] > 0.5 and figures["linear_accuracy"] > 0.5


def test_resume_a_finished_run_with_other_settings_is_refused(trained_run):
    out, _ = trained_run
    result = run_cli("train", "--out", out, "--resume", "--lr", "0.1")
    assert result.returncode == 2
    assert "learning_rate=0.1" in result.stderr and "differ" in result.stderr


def test_bench_prints_throughput():
    result = run_cli("bench", "--method", "simclr", "--encoder", "convnet", "--image-size", 32, "--batch-size", 64,
                     "--steps", 3, "--precision", "fp32")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = last_json(result)
    assert figures["images_per_second"] > 0 and figures["steps"] == 3 and figures["precision"] == "fp32"
    assert {"seconds", "device", "backend"} <= set(figures)


@pytest.mark.parametrize("args, message", [
    (["train", "--method", "simclrr", "--out", "{tmp}/r"], "Unknown method 'simclrr'"),
    (["train", "--batch-size", "100000", "--out", "{tmp}/r"], "larger than the 1438 training images"),
    (["train", "--data", "folder:/nonexistent/photos", "--out", "{tmp}/r"], "/nonexistent/photos"),
    (["train", "--out", "{tmp}/missing", "--resume"], "not a run folder"),
    (["train", "--param", "temperature", "--out", "{tmp}/r"], "NAME=VALUE"),
    (["eval", "--run", "{tmp}/missing"], "not a run folder"),
    (["--backend", "theano", "train", "--out", "{tmp}/r"], "theano"),
])
def test_cli_errors_are_clear(tmp_path, args, message):
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_the_run_cleanly_with_its_models(tmp_path):
    """``kill PID`` (a scheduler's notice) stops as the app's Stop does: a checkpoint, the models, exit 0."""
    import os
    import signal
    import subprocess
    import sys

    from sslcore.runs import RunDir
    from tests.helpers import wait_until

    run = RunDir(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-m", "sslcore", "train", "--data", "digits", "--encoder-width", "16",
                                "--batch-size", "128", "--epochs", "50", "--log-every", "1", "--no-progress",
                                "--out", str(run.path)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(run.steps()) >= 2, timeout=240, what="two training steps")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["state"] == "stopped" and summary["stop_reason"] == "requested" and summary["global_step"] < 550
    assert run.encoder_path.exists() and run.stopped_text() == f"stopped at step {summary['global_step']} of 550"
