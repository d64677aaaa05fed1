"""Training runs as background jobs: one subprocess per run, a FIFO queue, and state read from the run folder.

Why a subprocess (``python -m sslcore --backend B train ... --out RUNS/RUN_ID``) and not a thread in the app:
the run may use another Keras backend than the app; a crash or an out-of-memory kill cannot take the app
down; and the run folder stays the whole truth (status.json, steps.jsonl, metrics.jsonl, checkpoints), so
a reloaded page, a second tab or a restarted server all see the same run. The manager only adds what the
folder cannot know: which runs wait in the queue, and whether the process behind a "running" status is
still alive (if not, the run was *interrupted* and resumes from its last checkpoint).

Run folders live under ``$SSLCORE_RUNS`` (default ``./runs``); ``$SSLCORE_MAX_JOBS`` (default 1) runs may
train at once, and further Start requests wait their turn, first in first out. Training processes run at the
niceness ``$SSLCORE_TRAIN_NICE`` (default 10): the app's visitors are answered first and training takes the rest.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sslcore import pretrained
from sslcore.backend import installed_backends
from sslcore.config import TrainConfig, kind_of, parse_value
from sslcore.data import check_source, known_train_count
from sslcore.processes import explain_failure, last_error_line, pid_alive
from sslcore.runs import RunDir, list_runs, write_json_atomic

RUNS_ENV, MAX_JOBS_ENV, NICE_ENV = "SSLCORE_RUNS", "SSLCORE_MAX_JOBS", "SSLCORE_TRAIN_NICE"
# A training process left at the server's priority takes both cores of a Space from it, and every visitor's status
# poll, Stop and preview then waits behind a training step; at niceness 10 the scheduler gives the server what it
# asks for and training everything left over (all of the machine when nobody is calling).
DEFAULT_NICE = 10
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# States a caller sees. The run folder knows pending/running/finished/stopped/failed; the manager adds
# queued (waiting for a slot), starting (process up, data and model not ready yet), stopping (asked to
# stop, finishing its step) and interrupted (the folder says running but no process is behind it).
LIVE_STATES = ("queued", "starting", "running", "stopping")
RESUMABLE_STATES = ("stopped", "paused", "failed", "interrupted")
FINAL_STATES = ("finished", "stopped", "paused", "failed", "interrupted")

JOB_FILE, LOG_FILE = "job.json", "train.log"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs")


def max_jobs_from_env(default: int = 1) -> int:
    value = os.environ.get(MAX_JOBS_ENV)
    try:
        return max(1, int(value)) if value else default
    except ValueError:
        raise ValueError(f"{MAX_JOBS_ENV} must be a whole number of jobs; got {value!r}") from None


def nice_from_env(default: int = DEFAULT_NICE) -> int:
    value = os.environ.get(NICE_ENV)
    try:
        niceness = int(value) if value else default
    except ValueError:
        raise ValueError(f"{NICE_ENV} must be a whole number from 0 (the server's priority) to 19; got {value!r}") from None
    if not 0 <= niceness <= 19:
        raise ValueError(f"{NICE_ENV} must be from 0 (the server's priority) to 19; got {niceness}")
    return niceness


# -------------------------------------------------------------------------------------------- settings


def config_from_settings(settings: dict[str, Any] | TrainConfig) -> TrainConfig:
    """A validated TrainConfig from a form or a JSON client (text and 32.0 for 32 read by ``sslcore.config``)."""
    config = dataclasses.replace(settings) if isinstance(settings, TrainConfig) else TrainConfig.parse(dict(settings or {}))
    method_defaults = {item["name"]: item["default"] for item in _method_fields(config.method)}
    config.method_params = {name: parse_value(value, kind_of(method_defaults.get(name)), name)
                            for name, value in (config.method_params or {}).items()}
    config.validate()
    check_source(config.data, config.tfds_data_dir)
    count = known_train_count(config.data, config.test_fraction, config.seed)
    if count is not None:  # a batch larger than the data is refused before anything starts
        config.validate(count)
    return config


def _method_fields(method: str) -> list[dict]:
    from sslcore.methods import method_class

    return method_class(method).Params.describe()


def new_run_id(root: Path, config: TrainConfig, now: datetime | None = None) -> str:
    """Readable and unique: ``20261123-151200-simclr-digits`` (``-2``, ``-3`` ... if taken)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    data = re.sub(r"[^A-Za-z0-9]+", "-", config.data.split(":")[-1].rstrip("/").split("/")[-1]).strip("-") or "data"
    base = f"{stamp}-{config.method}-{data}".replace("_", "-")
    candidate, number = base, 1
    while (root / candidate).exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


# -------------------------------------------------------------------------------------------- processes


@dataclass
class Job:
    run_id: str
    backend: str
    resume: bool
    arguments: list[str]
    process: subprocess.Popen | None = None
    adopted_pid: int | None = None   # a live run found on disk, started by an earlier app
    stop_wanted: bool = False
    queued_at: float = dataclasses.field(default_factory=time.time)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.adopted_pid)


class JobManager:
    """Starts, queues, stops and resumes training processes; reports each run's state and history."""

    def __init__(self, root: str | os.PathLike | None = None, max_jobs: int | None = None, *,
                 python: str = sys.executable, poll_seconds: float = 0.5, start_thread: bool = True,
                 nice: int | None = None):
        self.root = Path(root) if root is not None else runs_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_jobs = max_jobs if max_jobs is not None else max_jobs_from_env()
        self.nice = nice if nice is not None else nice_from_env()
        self.python = python
        self.poll_seconds = poll_seconds
        self._lock = threading.RLock()
        self._queue: list[Job] = []
        self._active: dict[str, Job] = {}
        self._exits: dict[str, str] = {}   # run id -> how its process ended, when it ended badly
        self._closed = threading.Event()
        self._adopt_live_runs()
        self._thread = None
        if start_thread:
            self._thread = threading.Thread(target=self._pump_forever, name="sslcore-jobs", daemon=True)
            self._thread.start()

    # -- paths ---------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> RunDir:
        """The folder of ``run_id``; ids are plain names, so a client cannot point outside the runs folder."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id or ""):
            raise ValueError(f"{run_id!r} is not a run id (pick one from the run list)")
        return RunDir(self.root / run_id)

    def existing_run(self, run_id: str) -> RunDir:
        run = self.run_dir(run_id)
        if not run.exists():
            raise ValueError(f"No run {run_id!r} in {self.root}: pick one from the run list")
        return run

    # -- actions -------------------------------------------------------------------------------------
    def start(self, settings: dict[str, Any] | TrainConfig, backend: str | None = None, owner: str | None = None,
              max_seconds: float | None = None) -> str:
        """Validate ``settings``, create the run folder and queue the job; returns the run id. ``owner`` files the run
        under a visitor of a public Space (``sslcore.labs``) before anyone can see it; ``max_seconds`` stops its
        process cleanly (checkpoint and models saved, resumable) before that much training time."""
        config = config_from_settings(settings)
        backend = self._check_backend(backend)
        if config.init:   # a wrong start is said now, not as a failed run a minute later
            pretrained.check_source(config.init)
        with self._lock:
            run_id = new_run_id(self.root, config)
            run = self.run_dir(run_id)
            run.create({**config.to_dict(), "backend": backend})
            if owner:
                run.owner_path.write_text(owner)
            # The training process reads every setting from the run folder's config.json.
            self.enqueue(Job(run_id, backend, resume=False,
                             arguments=["--config", str(run.config_path), *_time_limit(max_seconds)]))
        return run_id

    def resume(self, run_id: str, backend: str | None = None, max_seconds: float | None = None) -> str:
        """Queue a stopped, failed or interrupted run again; it continues from its last checkpoint (for at most
        ``max_seconds`` of training in this process, when given)."""
        run = self.existing_run(run_id)
        with self._lock:
            state = self.status(run_id)["state"]
            if state not in RESUMABLE_STATES:
                raise ValueError(f"Run {run_id} is {state}; only a stopped, failed or interrupted run can be resumed")
            saved = run.config()
            backend = self._check_backend(backend or saved.get("backend"))
            if run.latest_checkpoint() is not None:
                job = Job(run_id, backend, resume=True, arguments=["--resume", *_time_limit(max_seconds)])
            else:
                # Never reached its first checkpoint: start it over from its saved settings.
                for path in (run.metrics_path, run.steps_path):
                    path.unlink(missing_ok=True)
                job = Job(run_id, backend, resume=False,
                          arguments=["--config", str(run.config_path), *_time_limit(max_seconds)])
            self._exits.pop(run_id, None)
            self.enqueue(job)
        return run_id

    def stop(self, run_id: str) -> dict[str, Any]:
        """Ask a run to stop after its current step (it saves a checkpoint); a queued run just leaves the queue."""
        run = self.existing_run(run_id)
        with self._lock:
            queued = next((job for job in self._queue if job.run_id == run_id), None)
            if queued is not None:
                self._queue.remove(queued)
                run.write_status("stopped", "removed from the queue before it started; Resume queues it again", pid=None)
            elif run_id in self._active:
                self._active[run_id].stop_wanted = True
                run.request_stop()
            elif self.status(run_id)["state"] in ("running", "starting"):
                run.request_stop()   # a live run started by an earlier app
        return self.status(run_id)

    def shutdown(self, stop_running: bool = False, timeout: float = 30.0) -> None:
        """Stop pumping the queue; with ``stop_running``, also stop the live runs and wait for them."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not stop_running:
            return
        with self._lock:
            self._queue.clear()
            active = list(self._active.values())
        for job in active:
            self.run_dir(job.run_id).request_stop()
        deadline = time.time() + timeout
        for job in active:
            while job.alive() and time.time() < deadline:
                time.sleep(0.2)
            if job.process is not None and job.alive():
                job.process.kill()

    # -- reading -------------------------------------------------------------------------------------
    def status(self, run_id: str) -> dict[str, Any]:
        """The run's state as a user should see it, with progress and, when queued, its place in line."""
        run = self.existing_run(run_id)
        with self._lock:
            self._pump()
            status = dict(run.status())
            status.setdefault("message", "")
            position = next((i for i, job in enumerate(self._queue, 1) if job.run_id == run_id), None)
            job = self._active.get(run_id)
            state = status.get("state", "pending")
            if position is not None:
                state = "queued"
                running = len(self._active)
                status["message"] = (f"waiting in the queue: number {position} of {len(self._queue)} "
                                     f"({running} job{'s' if running != 1 else ''} training, {self.max_jobs} at a time)")
            elif state in ("pending", "running"):
                alive = job.alive() if job is not None else self.trainer_pid(run, status) is not None
                if not alive:
                    state = "interrupted"
                    status["message"] = self._exits.get(run_id) or (
                        "the training process is gone (killed, out of memory, or the app restarted mid-run); "
                        "Resume continues from the last checkpoint")
                elif run.stop_path.exists() or (job is not None and job.stop_wanted):
                    state, status["message"] = "stopping", "stopping after the current step (a checkpoint is saved)"
                elif state == "pending":
                    state, status["message"] = "starting", "starting: loading the data and building the model"
            elif state == "failed":
                status["message"] = explain_failure(status["message"])
        status.update(run_id=run_id, state=state, queue_position=position, resumable=state in RESUMABLE_STATES,
                      live=state in LIVE_STATES)
        return status

    def history(self, run_id: str, after_step: int | None = None) -> dict[str, list[dict]]:
        """Every per-epoch row written so far, and every per-step row (or those after ``after_step``)."""
        run = self.run_dir(run_id)
        return {"steps": run.steps(after_step), "epochs": run.epochs()}

    def signature(self, run_id: str | None) -> tuple:
        """Changes whenever the run's files do: lets a poller skip redrawing when nothing happened."""
        if not run_id:
            return ()
        run = self.run_dir(run_id)
        with self._lock:
            position = next((i for i, job in enumerate(self._queue, 1) if job.run_id == run_id), None)
            active = run_id in self._active
        return (run_id, position, _stamp(run.status_path), _stamp(run.steps_path), _stamp(run.metrics_path),
                run.stop_path.exists(), active)

    def runs(self) -> list[dict[str, Any]]:
        """One summary row per run folder, newest first."""
        rows = []
        for run in list_runs(self.root):
            try:
                config = run.config()
            except (ValueError, OSError):
                continue
            status = self.status(run.name)
            last = (run.epochs() or [{}])[-1]
            rows.append({"run_id": run.name, "method": config.get("method"), "encoder": config.get("encoder"),
                         "data": config.get("data"), "backend": config.get("backend"), "state": status["state"],
                         "epochs": f"{last.get('epoch', 0)}/{config.get('epochs')}",
                         "knn_accuracy": last.get("knn_accuracy"), "probe_accuracy": last.get("probe_accuracy"),
                         "images_per_second": last.get("images_per_second"),
                         "has_encoder": run.encoder_path.exists(), "has_classifier": run.classifier_path.exists(),
                         "stopped_at": run.stopped_text()})   # its models are a stopped run's: "stopped at step N of M"
        return rows

    def live_run(self) -> str | None:
        """The run training now (or the first in line), for a page that has no run of its own yet."""
        with self._lock:
            self._pump()
            if self._active:
                return next(iter(self._active))
            return self._queue[0].run_id if self._queue else None

    def wait(self, run_id: str, states=FINAL_STATES, timeout: float = 300.0, poll: float = 0.25) -> dict[str, Any]:
        """Block until the run reaches one of ``states`` (for scripts and tests)."""
        deadline = time.time() + timeout
        while True:
            status = self.status(run_id)
            if status["state"] in states:
                return status
            if time.time() > deadline:
                raise TimeoutError(f"run {run_id} still {status['state']} after {timeout:.0f} s: {status.get('message')}")
            time.sleep(poll)

    # -- hooks: what a manager that trains another way replaces (sslcore.zerogpu.ChunkedJobManager) ----------
    def enqueue(self, job: Job) -> None:
        """Put ``job`` in line for a training process. Start and Resume call it, holding the lock, once the run
        folder holds the settings; the run then reads as pending until the process writes its own status."""
        run = self.run_dir(job.run_id)
        exiting = self._active.get(job.run_id)
        if exiting is not None:
            # Its process honoured a Stop (the run reads stopped) and is still exiting: the pump must not re-send
            # that Stop, or the resumed trainer would find it and stop at once.
            exiting.stop_wanted = False
        run.clear_stop()
        (run.path / JOB_FILE).unlink(missing_ok=True)
        run.write_status("pending", "queued", pid=None)
        self._queue.append(job)
        self._pump()

    def trainer_pid(self, run: RunDir, status: dict) -> int | None:
        """The live process training ``run`` (its folder says pending or running) that this manager did not start,
        or None: an earlier app's ``sslcore train``, by the pid in status.json or job.json. Without one, a run that
        says running was interrupted; with one, it keeps its slot in the queue."""
        pid = self._recorded_pid(run, status)
        return pid if pid_alive(pid) else None

    # -- the queue -----------------------------------------------------------------------------------
    def _check_backend(self, backend: str | None) -> str:
        available = installed_backends()
        if not backend:
            from sslcore import BACKEND
            return BACKEND if BACKEND in available else available[0]
        if backend not in available:
            raise ValueError(f"Backend {backend!r} is not installed here; choose one of {', '.join(available)}")
        return backend

    def _pump_forever(self) -> None:
        while not self._closed.wait(self.poll_seconds):
            try:
                with self._lock:
                    self._pump()
            except Exception as error:  # the pump must outlive any one bad run folder
                print(f"sslcore.jobs: {type(error).__name__}: {error}", file=sys.stderr)

    def _pump(self) -> None:
        """Reap ended processes, keep stop requests alive, start queued jobs while slots are free."""
        for run_id, job in list(self._active.items()):
            if job.alive():
                run = self.run_dir(run_id)
                # The trainer clears stale stop files when it starts: a Stop pressed during start-up is re-sent.
                if job.stop_wanted and not run.stop_path.exists() and run.status().get("state") in ("pending", "running"):
                    run.request_stop()
                continue
            del self._active[run_id]
            self._record_exit(job)
        while len(self._active) < self.max_jobs and not self._closed.is_set():
            # A run whose last process is still exiting waits for it: two trainers never share a run folder.
            job = next((job for job in self._queue if job.run_id not in self._active), None)
            if job is None:
                break
            self._queue.remove(job)
            self._launch(job)
            self._active[job.run_id] = job

    def _launch(self, job: Job) -> None:
        run = self.run_dir(job.run_id)
        command = [self.python, "-m", "sslcore", "--backend", job.backend, "train", *job.arguments,
                   "--out", str(run.path), "--no-progress"]
        if self.nice and shutil.which("nice"):   # nice(1) execs the command: job.process.pid is the trainer's
            command = ["nice", "-n", str(self.nice), *command]
        environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        with open(run.path / LOG_FILE, "ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            # A session of its own: Ctrl+C in the app's terminal does not kill the run (Stop does, cleanly).
            job.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=environment, start_new_session=True)   # our cwd: paths may be relative
        write_json_atomic(run.path / JOB_FILE, {"pid": job.process.pid, "backend": job.backend, "resume": job.resume,
                                                "command": command, "started": time.time()})

    def _record_exit(self, job: Job) -> None:
        """A process that ended without a final status: say how, so the page can say what to do."""
        run = self.run_dir(job.run_id)
        state = run.status().get("state")
        if state not in ("pending", "running"):
            return
        code = job.process.returncode if job.process is not None else None
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            self._exits[job.run_id] = (f"the training process was killed ({name}; out of memory?); "
                                       "Resume continues from the last checkpoint")
        elif code:
            reason = last_error_line(run.path / LOG_FILE) or f"the training command exited with code {code}"
            run.write_status("failed", explain_failure(reason), pid=None)

    def _recorded_pid(self, run: RunDir, status: dict) -> int | None:
        if status.get("state") == "running" and status.get("pid"):
            return status["pid"]
        try:
            return json.loads((run.path / JOB_FILE).read_text()).get("pid")
        except (OSError, ValueError):
            return None

    def _adopt_live_runs(self) -> None:
        """Runs still training from an earlier app keep their slot, so the queue does not overcommit."""
        for run in list_runs(self.root):
            status = run.status()
            if status.get("state") in ("pending", "running"):
                pid = self.trainer_pid(run, status)
                if pid is not None:
                    self._active[run.name] = Job(run.name, "", resume=False, arguments=[], adopted_pid=pid)


def _time_limit(max_seconds: float | None) -> list[str]:
    return [] if max_seconds is None else ["--max-seconds", f"{float(max_seconds):g}"]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:   # not written yet, or replaced this instant
        return None
    return stat.st_mtime_ns, stat.st_size

