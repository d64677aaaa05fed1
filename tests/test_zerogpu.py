"""ZeroGPU: the app's decorated calls with the real ``spaces`` package, and chunked training through an emulated
allocation (tests/zerogpu_emulator.py) that forks, enforces each call's duration and charges a quota."""
import functools
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from sslcore import chunks, zerogpu
from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests import zerogpu_emulator
from tests.helpers import tiny_config
from tests.test_trainer import without_timing

ROOT = Path(__file__).resolve().parents[1]
torch_only = pytest.mark.skipif(keras.backend.backend() != "torch",
                                reason="ZeroGPU runs PyTorch only (this phase runs another backend)")


def test_the_app_defines_zerogpu_functions_with_the_real_spaces_package():
    pytest.importorskip("spaces")
    pytest.importorskip("torch")
    # The real package, in ZeroGPU mode, patches a CUDA build of torch at import; this machine's torch is a CPU
    # build, so torch is hidden while `spaces` is imported (its torch patching then does nothing) and the app
    # is imported after, on torch, exactly as on the Space.
    script = """
import importlib.abc, sys
class HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("hidden while spaces is imported")
hide = HideTorch()
sys.meta_path.insert(0, hide)
import spaces
sys.meta_path.remove(hide)
import app, keras, sslcore, sslcore.zerogpu as z
decorated = sorted(name for name, value in vars(z).items() if hasattr(value, "zerogpu"))
app.build_app()   # the whole app builds in ZeroGPU mode
print({"backend": keras.backend.backend(), "reason": sslcore.BACKEND_REASON, "decorated": decorated})
"""
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environment.update(SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL="http://127.0.0.1:9/", SSLCORE_RUNS="/tmp/sslcore-zerogpu-test-runs")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = eval(done.stdout.strip().splitlines()[-1])   # a dict literal printed by the script above
    assert report["backend"] == "torch" and "ZeroGPU" in report["reason"]
    assert "train_chunk_on_gpu" in report["decorated"]
    assert {"load_run_on_gpu", "classify_files_on_gpu", "baseline_vs_finetune_on_gpu"} <= set(report["decorated"])


def test_without_zerogpu_nothing_is_decorated():
    assert not zerogpu.on_zerogpu()
    assert zerogpu.train_chunk_on_gpu is zerogpu._train_chunk
    assert zerogpu.gpu(30)(len) is len


def test_gpu_failures_are_explained_with_what_to_do():
    import gradio as gr

    quota = chunks.explain_gpu_failure(gr.Error("You have exceeded your free ZeroGPU quota (75s requested vs. 10s left). "
                                                "Try again in 3:10:00.", title="ZeroGPU quota exceeded"), 120)
    assert quota.kind == "quota" and "Try again in 3:10:00" in quota.message and "step 120" in quota.message
    assert "Resume" in quota.message
    assert chunks.explain_gpu_failure(gr.Error("No GPU is currently available", title="ZeroGPU queue timeout"), 5).kind == "no_gpu"
    overtime = chunks.explain_gpu_failure(gr.Error("GPU task aborted", title="ZeroGPU worker error"), None)
    assert overtime.kind == "overtime" and "first step" in overtime.message


def test_chunk_length_is_checked():
    os.environ[zerogpu.CHUNK_SECONDS_ENV] = "400"
    try:
        with pytest.raises(ValueError, match="between 5 and"):
            zerogpu.chunk_seconds()
    finally:
        del os.environ[zerogpu.CHUNK_SECONDS_ENV]


@pytest.fixture
def emulated_gpu(tmp_path, monkeypatch):
    state = tmp_path / "zerogpu.json"
    monkeypatch.setenv(zerogpu_emulator.STATE_ENV, str(state))
    zerogpu_emulator.write_state(state, {"quota_seconds": 3600, "calls": 0, "spent_seconds": 0.0, "refuse": None})
    return state


def _settings(config):
    return {k: v for k, v in config.to_dict().items() if k not in ("backend", "class_names")}


@pytest.mark.core
@pytest.mark.slow
@torch_only
def test_chunks_pause_when_the_quota_runs_out_and_resume_to_the_same_result(tmp_path, emulated_gpu):
    config = tiny_config(epochs=8, batch_size=64)   # 22 steps per epoch: several calls of a few seconds
    whole = Trainer(config, tmp_path / "whole")
    whole.fit()

    # 30 steps per call (a time budget would make the cuts depend on this machine's speed)
    thirty_steps = functools.partial(chunks.train_chunk, max_steps=30)
    call = zerogpu_emulator.GPU(duration=lambda run_path, seconds: seconds + chunks.HOST_GRACE_SECONDS)(thirty_steps)
    jobs = zerogpu.ChunkedJobManager(tmp_path / "runs", chunk_call=call, seconds=120)
    run_id = jobs.start(_settings(config), "torch")
    assert jobs.status(run_id)["state"] == "starting"
    run = RunDir(tmp_path / "runs" / run_id)

    states = []
    for status in jobs.drive(run_id):
        states.append(status["state"])
        if len(states) == 2:   # spend the visitor's quota after two calls
            state = zerogpu_emulator.read_state(emulated_gpu)
            zerogpu_emulator.write_state(emulated_gpu, {**state, "refuse": "quota"})
    paused = jobs.status(run_id)
    if paused["state"] == "finished":
        pytest.fail(f"the run finished in {len(states)} calls; make the chunks shorter: {chunks.Ledger(run).rows()}")
    assert paused["state"] == "paused", paused
    assert "quota" in paused["message"] and "Nothing was lost" in paused["message"] and "Resume" in paused["message"]
    assert paused["resumable"]
    ledger = chunks.Ledger(run).rows()
    assert [row["outcome"] for row in ledger] == ["stopped", "stopped", "quota"], ledger
    assert [row["steps"] for row in ledger] == [30, 30, 0]
    assert "GPU time spent on this run" in chunks.ledger_text(run.path)
    assert "one more epoch costs about" in chunks.ledger_text(run.path)

    zerogpu_emulator.write_state(emulated_gpu, {**zerogpu_emulator.read_state(emulated_gpu), "refuse": None})
    jobs.resume(run_id)
    for _ in jobs.drive(run_id):
        pass
    assert jobs.status(run_id)["state"] == "finished"
    assert zerogpu_emulator.read_state(emulated_gpu)["calls"] == 6   # 176 steps in calls of 30; the refusal is free

    resumed = keras.saving.load_model(run.encoder_path)
    expected = keras.saving.load_model(RunDir(tmp_path / "whole").encoder_path)
    for a, b in zip(expected.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for expected_row, got in zip(without_timing(RunDir(tmp_path / "whole").epochs()), without_timing(run.epochs()), strict=True):
        assert got == pytest.approx(expected_row, rel=1e-4)
    assert len(run.steps()) == len(RunDir(tmp_path / "whole").steps())


@pytest.mark.core
@pytest.mark.slow
@torch_only
def test_a_call_that_runs_past_its_duration_pauses_and_resumes(tmp_path, emulated_gpu):
    config = tiny_config(epochs=40)   # far more than 4 s of training
    # The host cuts the call after 4 s while the chunk meant to train for 60: the worker is killed mid-run.
    short = zerogpu_emulator.GPU(duration=4)(zerogpu._train_chunk)
    jobs = zerogpu.ChunkedJobManager(tmp_path / "runs", chunk_call=short, seconds=60)
    run_id = jobs.start(_settings(config), "torch")
    list(jobs.drive(run_id))
    status = jobs.status(run_id)
    assert status["state"] == "paused" and "ran past its time" in status["message"], status

    run = RunDir(tmp_path / "runs" / run_id)
    saved = chunks._checkpoint_step(run)   # the last epoch-end checkpoint before the kill (0 if none)
    jobs.chunk_call = zerogpu_emulator.GPU(duration=120)(functools.partial(chunks.train_chunk, max_steps=5))
    jobs.resume(run_id)
    next(iter(jobs.drive(run_id)))   # one call: on from the checkpoint, the killed worker's extra rows dropped
    assert [row["step"] for row in run.steps()] == list(range(1, saved + 6))
    assert chunks._checkpoint_step(run) == saved + 5


@pytest.mark.core
@torch_only
def test_stop_between_calls_and_one_driver_per_run(tmp_path, emulated_gpu):
    calls = []

    def fake_chunk(run_path, seconds):   # the driver's side only: no training needed to test stopping
        calls.append(run_path)
        RunDir(run_path).request_stop()
        return {"state": "stopped"}

    jobs = zerogpu.ChunkedJobManager(tmp_path / "runs", chunk_call=fake_chunk, seconds=6)
    run_id = jobs.start(_settings(tiny_config()), "torch")
    driver = jobs.drive(run_id)
    next(driver)
    with pytest.raises(ValueError, match="already training"):
        next(jobs.drive(run_id))
    list(driver)
    assert jobs.status(run_id)["state"] == "stopped" and len(calls) == 1


@pytest.mark.core
@torch_only
def test_stop_pressed_while_the_run_rests_between_two_calls_stops_it(tmp_path, emulated_gpu):
    calls = []

    def fake_chunk(run_path, seconds):   # each call ends on its time budget, as a real one does
        calls.append(run_path)
        return {"state": "stopped"}

    jobs = zerogpu.ChunkedJobManager(tmp_path / "runs", chunk_call=fake_chunk, seconds=6)
    run_id = jobs.start(_settings(tiny_config()), "torch")
    driver = jobs.drive(run_id)
    assert next(driver)["state"] == "paused"   # between calls: the page is about to ask for the next one
    jobs.stop(run_id)                          # the visitor presses Stop just then
    list(driver)
    assert jobs.status(run_id)["state"] == "stopped" and len(calls) == 1


def test_inputs_are_checked_before_any_gpu_call(tmp_path, monkeypatch):
    def no_gpu_call(*args, **kwargs):
        raise AssertionError("a GPU call was made for bad input")

    for name in ("load_run_on_gpu", "classify_files_on_gpu", "baseline_vs_finetune_on_gpu"):
        monkeypatch.setattr(zerogpu, name, no_gpu_call)
    unfinished = RunDir(tmp_path / "run")
    unfinished.create(tiny_config().to_dict())
    with pytest.raises(ValueError, match="has no trained encoder yet"):
        zerogpu.load_run(unfinished.path)
    with pytest.raises(ValueError, match="has no trained encoder yet"):
        zerogpu.classify_files(unfinished.path, ["a.png"])
    with pytest.raises(ValueError, match="not a run folder"):
        zerogpu.baseline_vs_finetune(tmp_path / "nothing", epochs=3)
