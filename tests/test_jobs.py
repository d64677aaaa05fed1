"""The job manager without any UI: real training subprocesses on digits, kept tiny (about 2 minutes in all)."""
import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime

import pytest

import sslcore  # noqa: F401  (chooses the Keras backend before keras is imported)
from sslcore.config import TrainConfig
from sslcore.jobs import JobManager, config_from_settings, new_run_id
from tests.helpers import ROOT, wait_until

TINY = {"epochs": 2, "batch_size": 128, "image_size": 32}


@pytest.fixture
def manager(tmp_path):
    jobs = JobManager(tmp_path / "runs", max_jobs=1, poll_seconds=0.2)
    yield jobs
    jobs.shutdown(stop_running=True)


# ---------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize("settings, words", [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 5000}, "batch_size 5000 is larger than the"),
    ({"data": "folder:/no/such/folder"}, "does not exist"),
    ({"data": "tfds:not_a_dataset"}, "not prepared"),
    ({"encoder": "vgg"}, "Unknown encoder"),
    ({"method_params": {"temprature": 0.1}}, "Unknown setting(s) temprature"),
    ({"method_params": {"temperature": -1}}, "temperature"),
    ({"image_size": "big"}, "image_size must be a whole number"),
])
def test_bad_settings_are_rejected_before_anything_starts(manager, settings, words):
    with pytest.raises(ValueError) as error:
        manager.start({**TINY, **settings})
    assert words in str(error.value)
    assert not any(manager.root.iterdir()), "a rejected start must not create a run folder"


def test_unknown_backend_is_rejected(manager):
    with pytest.raises(ValueError, match="not installed"):
        manager.start(TINY, backend="mxnet")


def test_form_values_are_typed_like_the_defaults():
    config = config_from_settings({"image_size": 32.0, "epochs": "3", "learning_rate": "0.01", "method": "moco",
                                   "method_params": {"queue_size": 512.0, "head_batch_norm": "true", "version": "v3"}})
    assert config.image_size == 32 and isinstance(config.image_size, int)
    assert config.epochs == 3 and config.learning_rate == 0.01
    assert config.method_params == {"queue_size": 512, "head_batch_norm": True, "version": "v3"}


def test_train_config_file_recreates_every_setting_and_flags_override_it(tmp_path):
    """The job manager starts training with --config RUN/config.json: every setting must arrive unchanged,
    including those with no flag of their own."""
    from sslcore.cli import build_parser
    from sslcore.commands.options import config_values

    config = config_from_settings({"method": "moco", "method_params": {"temperature": 0.3, "version": "v3"},
                                   "epochs": 3, "learning_rate": 3e-4, "augment": "simclr",
                                   "augment_params": {"blur_prob": 0.5, "crop_scale": [0.2, 1.0]},
                                   "precision": "bf16", "log_every_steps": 2, "jit_compile": False,
                                   "knn_bank_size": 5, "knn_temperature": 0.2})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config.to_dict(), "backend": "jax", "class_names": ["a", "b"]}))
    parsed = build_parser().parse_args(["train", "--config", str(path), "--out", "-"])
    assert TrainConfig.from_dict(config_values(parsed)) == config
    overridden = build_parser().parse_args(["train", "--config", str(path), "--epochs", "7", "--param", "momentum=0.9",
                                            "--out", "-"])
    values = config_values(overridden)
    assert values["epochs"] == 7 and values["method_params"] == {"temperature": 0.3, "version": "v3", "momentum": "0.9"}


def test_a_bad_config_file_is_a_clear_error(tmp_path):
    from sslcore.cli import build_parser
    from sslcore.commands.options import config_values

    (tmp_path / "bad.json").write_text("{not json")
    for name, message in (("bad.json", "not valid JSON"), ("missing.json", "no such file")):
        with pytest.raises(ValueError, match=message):
            config_values(build_parser().parse_args(["train", "--config", str(tmp_path / name), "--out", "-"]))


def test_run_ids_are_readable_and_unique(tmp_path):
    config, now = TrainConfig(method="barlow_twins", data="folder:/data/My Photos/"), datetime(2026, 11, 23, 15, 12)
    first = new_run_id(tmp_path, config, now)
    assert first == "20261123-151200-barlow-twins-My-Photos"
    (tmp_path / first).mkdir()
    assert new_run_id(tmp_path, config, now) == first + "-2"


def test_describe_reads_like_a_progress_line():
    from pages.train import describe   # the Train page's progress line, from the manager's status

    line = describe({"state": "running", "step": 12, "total_steps": 55, "epoch": 2, "epochs": 5,
                     "images_per_second": 1650.4, "eta_seconds": 65})
    assert line == "running · step 12/55 · epoch 2/5 · 1,650 img/s · 1 min 05 s left"


def set_or_unset(monkeypatch, name: str, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("value, expected", [(None, 1), ("3", 3), ("0", 1)])
def test_sslcore_max_jobs_sets_how_many_runs_train_at_once(tmp_path, monkeypatch, value, expected):
    set_or_unset(monkeypatch, "SSLCORE_MAX_JOBS", value)
    assert JobManager(tmp_path / "runs", start_thread=False).max_jobs == expected
    assert JobManager(tmp_path / "runs", max_jobs=2, start_thread=False).max_jobs == 2, "the argument wins"


def test_a_bad_sslcore_max_jobs_is_named_in_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLCORE_MAX_JOBS", "two")
    with pytest.raises(ValueError, match="SSLCORE_MAX_JOBS must be a whole number of jobs; got 'two'"):
        JobManager(tmp_path / "runs", start_thread=False)


@pytest.mark.parametrize("value, expected", [(None, 10), ("0", 0), ("19", 19)])
def test_sslcore_train_nice_sets_the_training_processes_priority(tmp_path, monkeypatch, value, expected):
    set_or_unset(monkeypatch, "SSLCORE_TRAIN_NICE", value)
    assert JobManager(tmp_path / "runs", start_thread=False).nice == expected
    assert JobManager(tmp_path / "runs", nice=3, start_thread=False).nice == 3, "the argument wins"


@pytest.mark.parametrize("value, words", [("high", "whole number from 0"), ("25", "from 0 (the server's priority) to 19")])
def test_a_bad_sslcore_train_nice_is_named_in_the_error(tmp_path, monkeypatch, value, words):
    monkeypatch.setenv("SSLCORE_TRAIN_NICE", value)
    with pytest.raises(ValueError, match=rf"SSLCORE_TRAIN_NICE must be .*{re.escape(words)}"):
        JobManager(tmp_path / "runs", start_thread=False)


# ---------------------------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_runs_queue_in_order_and_finish_with_their_history(manager):
    first = manager.start(TINY)
    second = manager.start({**TINY, "epochs": 1, "method": "barlow_twins"})
    queued = manager.status(second)
    assert queued["state"] == "queued" and queued["queue_position"] == 1
    assert "number 1" in queued["message"]
    assert manager.status(first)["state"] in ("starting", "running")

    done = manager.wait(first, timeout=300)
    assert done["state"] == "finished", done["message"]
    history = manager.history(first)
    assert [row["step"] for row in history["steps"]] == list(range(1, done["total_steps"] + 1))
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert history["epochs"][-1]["knn_accuracy"] > 0.3
    assert manager.existing_run(first).encoder_path.exists()

    assert manager.wait(second, timeout=300)["state"] == "finished"
    listed = {row["run_id"]: row for row in manager.runs()}
    assert listed[first]["epochs"] == "2/2" and listed[first]["has_classifier"]


@pytest.mark.slow
def test_stop_ends_within_a_step_and_a_killed_process_shows_as_interrupted_and_both_resume(manager):
    """One run through both interruptions (a training process costs seconds to start): Stop, resume, SIGKILL of the
    resumed process, resume again; every step is counted exactly once across the three processes."""
    run_id = manager.start({**TINY, "epochs": 8})
    run = manager.existing_run(run_id)
    wait_until(lambda: len(run.steps()) >= 1, timeout=300, every=0.05, what="a first step")
    # Below the server's priority (SSLCORE_TRAIN_NICE, 10 by default), so visitors' calls are answered first.
    trainer = json.loads((run.path / "job.json").read_text())["pid"]
    assert os.getpriority(os.PRIO_PROCESS, trainer) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + manager.nice)
    assert manager.stop(run_id)["state"] == "stopping"
    stopped = manager.wait(run_id, timeout=60)
    assert stopped["state"] == "stopped" and stopped["resumable"]
    steps_at_stop = stopped["step"]
    assert steps_at_stop < stopped["total_steps"]
    stop_checkpoint = run.latest_checkpoint()
    assert stop_checkpoint is not None

    manager.resume(run_id)
    wait_until(lambda: run.latest_checkpoint() != stop_checkpoint and run.status().get("state") == "running",
               timeout=300, what="a checkpoint of the resumed job")
    os.kill(run.status()["pid"], signal.SIGKILL)
    interrupted = manager.wait(run_id, states=("interrupted",), timeout=30)
    assert interrupted["resumable"] and "killed" in interrupted["message"]
    steps = [row["step"] for row in run.steps()]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > steps_at_stop, \
        "the run resumed after the Stop counts every step exactly once"

    # A restarted app has no process handle, only the folder: it must come to the same conclusion.
    fresh = JobManager(manager.root, max_jobs=1, start_thread=False)
    assert fresh.status(run_id)["state"] == "interrupted"

    manager.resume(run_id)
    done = manager.wait(run_id, timeout=300)
    assert done["state"] == "finished", done["message"]
    steps = [row["step"] for row in manager.history(run_id)["steps"]]
    assert steps == list(range(1, done["total_steps"] + 1)), "a resumed run counts every step exactly once"
    assert len(manager.history(run_id)["epochs"]) == 8


@pytest.mark.slow
def test_a_resume_while_the_stopped_process_is_still_exiting_is_not_stopped_again(tmp_path):
    """The stopped trainer writes "stopped", then takes a moment to exit; a Resume pressed meanwhile must neither get
    the old Stop re-sent to it (the resumed run stopped at once, on a busy machine) nor start beside the old one."""
    from sslcore.jobs import Job
    from sslcore.runs import RunDir

    jobs = JobManager(tmp_path / "runs", max_jobs=2, start_thread=False)
    run = RunDir(jobs.root / "exiting")
    run.path.mkdir()
    run.write_status("stopped", "stopped at step 5 of 88", pid=None)
    still_exiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with jobs._lock:
            jobs._active[run.path.name] = Job(run.path.name, "tensorflow", resume=False, arguments=[],
                                              process=still_exiting, stop_wanted=True)
            jobs.enqueue(Job(run.path.name, "tensorflow", resume=True, arguments=["--resume"]))
            jobs._pump()
        assert not run.stop_path.exists(), "the old Stop was re-sent to the resumed run"
        assert [job.run_id for job in jobs._queue] == [run.path.name], "started beside the process still exiting"
    finally:
        still_exiting.kill()
        still_exiting.wait()


def test_stop_removes_a_queued_run(manager):
    first = manager.start({**TINY, "epochs": 1})
    second = manager.start(TINY)
    assert manager.stop(second)["state"] == "stopped"
    assert manager.status(second)["queue_position"] is None
    manager.stop(first)
    assert manager.wait(first, timeout=300)["state"] in ("stopped", "finished")


# The app's side of a server killed with SIGKILL: a JobManager in a process of its own starts a run, then dies.
KILLED_SERVER = """
import sys, time
from sslcore.jobs import JobManager
jobs = JobManager(sys.argv[1], max_jobs=1, poll_seconds=0.2)
print(jobs.start({"epochs": 4, "batch_size": 128, "image_size": 32}), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_server_killed_with_sigkill_leaves_its_run_training_and_a_new_one_stops_and_resumes_it(tmp_path):
    runs = tmp_path / "runs"
    server = subprocess.Popen([sys.executable, "-c", KILLED_SERVER, str(runs)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        run_id = server.stdout.readline().strip()
        assert run_id, "the server process started a run"
        first = JobManager(runs, max_jobs=1, start_thread=False)   # reads the folder only, like a second tab's server
        run = first.existing_run(run_id)
        wait_until(lambda: len(run.steps()) >= 2, timeout=300, every=0.1, what="the run's first steps")
    finally:
        server.kill()
        server.wait()
    steps_when_killed = len(run.steps())
    wait_until(lambda: len(run.steps()) > steps_when_killed + 2, timeout=60, every=0.1,
               what="steps after the server died")

    restarted = JobManager(runs, max_jobs=1, poll_seconds=0.2)   # the restarted server re-attaches
    try:
        assert restarted.status(run_id)["state"] == "running"
        other = restarted.start({**TINY, "epochs": 1})
        assert restarted.status(other)["state"] == "queued", "the adopted run keeps its slot"
        assert restarted.stop(other)["state"] == "stopped"
        restarted.stop(run_id)
        stopped = restarted.wait(run_id, timeout=60)
        assert stopped["state"] == "stopped" and stopped["resumable"], stopped["message"]
        restarted.resume(run_id)
        done = restarted.wait(run_id, timeout=300)
        assert done["state"] == "finished", done["message"]
        assert [row["step"] for row in run.steps()] == list(range(1, done["total_steps"] + 1))
    finally:
        restarted.shutdown(stop_running=True)


@pytest.mark.slow
def test_a_diverging_run_fails_with_a_message_that_says_what_to_do(manager):
    run_id = manager.start({**TINY, "epochs": 1, "method_params": {"temperature": 1e-45}})
    failed = manager.wait(run_id, timeout=300)
    assert failed["state"] == "failed"
    assert "loss=nan" in failed["message"] and "temperature" in failed["message"]
