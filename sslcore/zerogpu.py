"""Hugging Face ZeroGPU: the app's accelerator work as ``@spaces.GPU`` calls, and training as chunks of them.

On a ZeroGPU Space (``SPACES_ZERO_GPU`` set) a GPU is attached only while a function decorated with
``spaces.GPU`` runs, in a worker forked from the app, for at most its ``duration``, charged to the visitor's
daily quota. Everywhere else :func:`gpu` returns the function unchanged and ``spaces`` is never imported.

The decorated functions are module attributes, created at import: ZeroGPU refuses to start a Space whose
app defines none, and registers them before the server starts. Their arguments are validated by the
caller before the call (an error raised inside the worker reaches the visitor as a bare "Error").
"""
from __future__ import annotations

import os
from typing import Callable

from sslcore import chunks, explore, finetune
from sslcore.backend import zero_gpu_space
from sslcore.jobs import JobManager
from sslcore.processes import pid_alive
from sslcore.runs import RunDir

CHUNK_SECONDS_ENV = "SSLCORE_CHUNK_SECONDS"
# ZeroGPU grants one call at most about 300 s; the default 60 s keeps the visitor's wait per call short
# while start-up stays a small share of it (docs/benchmarks.md: ZeroGPU chunk start-up).
MAX_CALL_SECONDS = 300


on_zerogpu = zero_gpu_space


def chunk_seconds() -> float:
    seconds = float(os.environ.get(CHUNK_SECONDS_ENV, chunks.DEFAULT_CHUNK_SECONDS))
    if not 5 <= seconds <= MAX_CALL_SECONDS - chunks.HOST_GRACE_SECONDS:
        raise ValueError(f"{CHUNK_SECONDS_ENV}={seconds:g}: a chunk must last between 5 and "
                         f"{MAX_CALL_SECONDS - chunks.HOST_GRACE_SECONDS:g} s (ZeroGPU's longest call, less the grace)")
    return seconds


def gpu(duration: int | Callable[..., int]) -> Callable[[Callable], Callable]:
    """``spaces.GPU(duration=...)`` on ZeroGPU; elsewhere the identity (nothing about ZeroGPU is imported)."""
    if not on_zerogpu():
        return lambda function: function
    import spaces

    return spaces.GPU(duration=duration)


# ------------------------------------------------------------------------------------ decorated calls


def _train_chunk(run_path: str, seconds: float) -> dict:
    return chunks.train_chunk(run_path, seconds)


train_chunk_on_gpu = gpu(duration=lambda run_path, seconds: int(seconds + chunks.HOST_GRACE_SECONDS))(_train_chunk)
# The other pages' accelerator work: embedding a run's images (Explore), classifying uploads (Classify) and the
# baseline-vs-fine-tune comparison (Train). Their callers validate first (see the module docstring).
load_run_on_gpu = gpu(duration=60)(explore.load_run)
classify_files_on_gpu = gpu(duration=60)(explore.classify_files)
baseline_vs_finetune_on_gpu = gpu(duration=MAX_CALL_SECONDS)(finetune.baseline_vs_finetune)


def _check_source(source) -> None:
    """What would fail inside a GPU call, checked before it (there, an error reaches the visitor as "Error")."""
    from sslcore import hub

    if not hub.is_hub_model(source):
        explore.finished_run(source)


def load_run(source, token: str | None = None, data: str | None = None):
    _check_source(source)
    return load_run_on_gpu(source, token, data)


def classify_files(source, files, top_k: int = 3, names=None, token: str | None = None):
    _check_source(source)
    if not files:
        raise ValueError("No images given: upload one or more image files")
    return classify_files_on_gpu(source, files, top_k, names=names, token=token)


def baseline_vs_finetune(run_path, epochs: int, on_epoch=None):
    explore.finished_run(run_path)
    if not 1 <= epochs <= finetune.MAX_EPOCHS:
        raise ValueError(f"epochs must be between 1 and {finetune.MAX_EPOCHS}; got {epochs}")
    # A callback into the page cannot cross into ZeroGPU's forked worker.
    return baseline_vs_finetune_on_gpu(run_path, epochs=epochs, on_epoch=None if on_zerogpu() else on_epoch)


# ------------------------------------------------------------------------------------ the job manager


class ChunkedJobManager(JobManager):
    """Runs as the page drives them, one GPU call at a time, instead of background processes.

    On ZeroGPU a GPU call must come from the visitor's own request (it spends that visitor's quota), so
    nothing trains in the background: Start and Resume only make the run ready, and the page's event then
    iterates :meth:`drive`. Closing the tab ends that event, so the run pauses after its current call; the
    reopened page re-attaches and offers Resume.
    """

    def __init__(self, root=None, *, chunk_call: Callable[[str, float], dict] | None = None,
                 seconds: float | None = None):
        super().__init__(root, max_jobs=1, start_thread=False)
        self.chunk_call = chunk_call or train_chunk_on_gpu
        self.seconds = seconds if seconds is not None else chunk_seconds()
        self._driven: set[str] = set()   # runs some page is training now: one driver per run

    def status(self, run_id: str) -> dict:
        status = super().status(run_id)
        if status["state"] == "starting":   # between two GPU calls: the run folder says which and why
            status["message"] = self.run_dir(run_id).status().get("message") or status["message"]
        return status

    def enqueue(self, job) -> None:
        """No queue and no process: the run is made ready, and the page's event trains it (:meth:`drive`)."""
        run = self.run_dir(job.run_id)
        run.clear_stop()
        run.write_status("pending", "ready: the page asks for the first GPU call", pid=os.getpid())

    def stop(self, run_id: str) -> dict:
        """A run some page is driving stops inside its current call, or before the next one: between two calls
        its status reads as paused, which the plain manager would take for a run with nothing to stop."""
        with self._lock:
            driven = run_id in self._driven
        if not driven:
            return super().stop(run_id)
        self.existing_run(run_id).request_stop()
        return self.status(run_id)

    def trainer_pid(self, run: RunDir, status: dict) -> int | None:
        # The status holds the pid of the GPU host's worker during a call (whatever its command line), and the app's
        # own between calls, so a run waiting for its next call reads as starting, not interrupted.
        pid = status.get("pid")
        return pid if pid_alive(pid, command_has=b"") else None

    def drive(self, run_id: str):
        """Train ``run_id`` chunk by chunk; yields its status after each GPU call."""
        self.existing_run(run_id)
        with self._lock:
            if run_id in self._driven:
                raise ValueError(f"Run {run_id} is already training from another tab")
            self._driven.add(run_id)
        try:
            run = self.run_dir(run_id)
            try:
                warm_data_cache(run)
            except ValueError as error:   # DataError included: the run cannot start, and says why
                run.write_status("failed", str(error), pid=None)
                yield self.status(run_id)
                return
            yield from chunks.ChunkedRun(self.run_dir(run_id).path, self.chunk_call, self.seconds)
        finally:
            with self._lock:
                self._driven.discard(run_id)

    def gpu_text(self, run_id: str | None) -> str:
        return chunks.ledger_text(self.run_dir(run_id).path) if run_id else ""


ABOUT_CHUNKS = (
    "**Training on ZeroGPU.** This Space lends a GPU one call at a time, charged to *your* daily ZeroGPU quota "
    "(more when logged in, most with PRO). A run trains as a series of calls of about {seconds:.0f} s each: every "
    "call continues from the last checkpoint and saves a new one, and the charts carry on across calls. If your "
    "quota runs out or no GPU is free, the run **pauses** with a message saying when to retry; nothing is lost, "
    "and **Resume** continues from the checkpoint. Calls are started by this page, so closing the tab pauses "
    "the run (after the call under way and at most one more); reopen the page and press Resume. The run's status shows the GPU seconds "
    "spent and what one more epoch costs.")


def warm_data_cache(run: RunDir) -> None:
    """Decode (or download) the run's data here, before the first GPU call: a folder, archive or Hub dataset then
    loads from sslcore's cache inside each call instead of spending the visitor's GPU seconds on decoding."""
    from sslcore.run import load_run_data

    config = run.config()
    if config["data"].partition(":")[0] in ("folder", "hf"):
        load_run_data(config)
