"""A run trained in chunks, each in a fresh process, ends exactly where one uninterrupted run ends.

On a ZeroGPU Space a run gets the GPU in short calls, so it is trained in chunks: every chunk is a new
process that resumes the last checkpoint (weights, optimizer, method state, RNG state, data position) and
stops with a new one. Here the chunks are the real command line, ``train --resume --max-steps N``: a step
budget puts the cuts where the test needs them (one at an epoch boundary, one inside an epoch), which a
time budget cannot promise: on JAX a fresh process spends its first step compiling, and ``--max-seconds``
then leaves room for one step per chunk.

Backend-sensitive: each CI phase (``-m core`` with KERAS_BACKEND set) checks its own backend.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.slow, pytest.mark.core]

# A tiny_config-sized run as flags: digits at 32 px, a narrow convnet, batch 128 (11 steps per epoch), 2 epochs.
SETTINGS = ["--data", "digits", "--image-size", 32, "--encoder-width", 16, "--batch-size", 128, "--epochs", 2,
            "--log-every", 3, "--seed", 7]
STEPS_PER_EPOCH, TOTAL_STEPS = 11, 22
# Chunk budgets: the first ends on the epoch boundary, the second inside epoch 2, the last finishes.
CHUNK_STEPS = [STEPS_PER_EPOCH, 7, None]
TIMING_FIELDS = {"images_per_second", "seconds", "eval_seconds", "elapsed_seconds", "eta_seconds"}


def start_training(out, *flags) -> subprocess.Popen:
    """One training process, as a user (or the Space's GPU call) starts it."""
    command = [sys.executable, "-m", "sslcore", "train", "--backend", keras.backend.backend(), "--no-progress",
               "--out", out, *SETTINGS, *flags]
    return subprocess.Popen([str(part) for part in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})


def summary_of(process: subprocess.Popen) -> dict:
    """The JSON summary a finished training process printed as its last stdout line."""
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def assert_same_rows(expected, got):
    assert len(got) == len(expected)
    for want, row in zip(without_timing(expected), without_timing(got)):
        assert row.keys() == want.keys()
        assert row == pytest.approx(want, rel=1e-5, abs=1e-6), row["step"]


def assert_same_arrays(expected, got):
    assert len(got) == len(expected)
    for want, value in zip(expected, got):
        scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same seed trained once uninterrupted and once in chunks; the chunks' summaries and statuses."""
    root = tmp_path_factory.mktemp(f"chunked-{keras.backend.backend()}")
    whole, chunked = root / "whole", root / "chunked"
    # The uninterrupted run goes on beside the chunks: most of each process is Python start-up and imports,
    # single-threaded, so two at a time nearly halve the wait on 2 cores.
    uninterrupted = start_training(whole)
    try:
        chunks = []
        for number, steps in enumerate(CHUNK_STEPS):
            flags = (["--resume"] if number else []) + (["--max-steps", steps] if steps else [])
            summary = summary_of(start_training(chunked, *flags))
            state = RunDir.load_checkpoint(RunDir(chunked).latest_checkpoint())[2]
            chunks.append({"summary": summary, "status": RunDir(chunked).status(), "position": state["position"]})
        assert summary_of(uninterrupted)["state"] == "finished"
    finally:
        uninterrupted.kill()  # a no-op once it has finished; never left running when a chunk failed
    return RunDir(whole), RunDir(chunked), chunks


def test_the_chunks_really_cut_the_run(runs):
    _, chunked, chunks = runs
    assert len(chunks) >= 3
    assert [c["summary"]["state"] for c in chunks] == ["stopped", "stopped", "finished"]
    assert [c["summary"]["global_step"] for c in chunks] == [11, 18, TOTAL_STEPS]
    assert [c["status"]["state"] for c in chunks] == ["stopped", "stopped", "finished"]
    assert len({c["status"]["pid"] for c in chunks}) == len(chunks), "each chunk is its own process"
    # One chunk ended on the epoch boundary, one inside epoch 2 (7 of its 11 steps done).
    assert [(c["position"]["epoch"], c["position"]["step_in_epoch"]) for c in chunks] == [(1, 0), (1, 7), (2, 0)]
    assert [path.name for path in chunked.checkpoints()] == [f"ckpt-{s:08d}.npz" for s in (11, 18, TOTAL_STEPS)]


def test_chunked_run_ends_with_the_uninterrupted_runs_weights(runs):
    whole, chunked, _ = runs
    want_model, want_optimizer, _ = RunDir.load_checkpoint(whole.latest_checkpoint())
    got_model, got_optimizer, _ = RunDir.load_checkpoint(chunked.latest_checkpoint())
    assert_same_arrays(want_model, got_model)
    assert_same_arrays(want_optimizer, got_optimizer)
    # The exported encoder, as users load it.
    want = keras.saving.load_model(whole.encoder_path).get_weights()
    got = keras.saving.load_model(chunked.encoder_path).get_weights()
    assert_same_arrays(want, got)


def test_chunked_run_has_the_uninterrupted_runs_metrics(runs):
    whole, chunked, chunks = runs
    assert [row["epoch"] for row in chunked.epochs()] == [1, 2]
    assert_same_rows(whole.epochs(), chunked.epochs())
    assert [row["step"] for row in chunked.steps()] == list(range(1, TOTAL_STEPS + 1)), "no step lost or repeated"
    assert_same_rows(whole.steps(), chunked.steps())
    summary = json.loads(whole.summary_path.read_text())
    assert chunks[-1]["summary"]["knn_accuracy"] == pytest.approx(summary["knn_accuracy"], rel=1e-5)


def test_a_step_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        Trainer(tiny_config()).fit(max_steps=0)


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="TensorFlow is the backend of this phase")
def test_a_chunk_does_not_import_tensorflow_to_seed_it(tmp_path):
    """Keras's set_random_seed imports TensorFlow when it is installed: 1.7 s of every torch or JAX chunk's start-up."""
    script = ("import sys; from sslcore.trainer import Trainer; from tests.helpers import tiny_config; "
              "Trainer(tiny_config()).prepare(); print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": keras.backend.backend()})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "False"


def test_a_gpu_call_that_ends_on_its_slice_exports_nothing_and_a_stop_exports(tmp_path):
    """ZeroGPU's chunks: the run goes on after a call's slice, so only a Stop pressed during a call exports."""
    from sslcore.chunks import train_chunk

    run = RunDir(tmp_path / "run")
    run.create(tiny_config(epochs=1, encoder_width=16).to_dict())
    assert train_chunk(str(run.path), 120, max_steps=2)["state"] == "stopped"
    assert not run.encoder_path.exists() and run.stopped_text() is None
    run.request_stop()   # pressed while the next call starts
    assert train_chunk(str(run.path), 120, max_steps=2)["stop_reason"] == "requested"
    assert run.encoder_path.exists() and run.stopped_text() == "stopped at step 2 of 11"
