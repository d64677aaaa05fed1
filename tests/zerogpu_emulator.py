"""A stand-in for the ``spaces`` package on a ZeroGPU Space, for tests on a machine without one.

It emulates what the app sees at the boundary it owns, the decorated call: ``GPU(duration=...)`` runs the
function in a forked worker (as ZeroGPU does: arguments and results cross by pickling; see _fork_context), kills
the worker when it runs past its duration, charges a daily quota, and fails the way ZeroGPU does, with a
``gr.Error`` titled "ZeroGPU quota exceeded", "ZeroGPU queue timeout" or "ZeroGPU worker error".

The quota lives in a JSON file (``SSLCORE_EMULATED_ZEROGPU`` names it) so a test can spend it from outside the
app's process: ``{"quota_seconds": 120, "calls": 0, "spent_seconds": 0.0, "refuse": null}``; ``refuse`` set to
"quota" or "no_gpu" fails the next calls until it is cleared.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

STATE_ENV = "SSLCORE_EMULATED_ZEROGPU"
if os.environ.get(STATE_ENV):
    # In a process that emulates ZeroGPU (the app, its fork server), this module is `spaces`, before gradio
    # imports the real one (which, told it is on ZeroGPU, would patch a CUDA torch this machine does not have).
    sys.modules["spaces"] = sys.modules[__name__]

import gradio as gr  # noqa: E402

DEFAULT_DURATION = 60


def install(state_path: str | os.PathLike, quota_seconds: float = 3600) -> None:
    """Make ``import spaces`` give this module, with a fresh quota in ``state_path``."""
    os.environ[STATE_ENV] = str(state_path)
    os.environ["SPACES_ZERO_GPU"] = "true"
    write_state(state_path, {"quota_seconds": quota_seconds, "calls": 0, "spent_seconds": 0.0, "refuse": None})
    sys.modules["spaces"] = sys.modules[__name__]


def read_state(path: str | os.PathLike | None = None) -> dict:
    return json.loads(Path(path or os.environ[STATE_ENV]).read_text())


def write_state(path: str | os.PathLike, state: dict) -> None:
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)


def gradio_auto_wrap(function):   # gradio calls this on every event function when `spaces` is importable
    return function


def GPU(task=None, *, duration=None, **_):   # noqa: N802 - the name the real package uses
    if task is None:
        return lambda function: _decorate(function, duration)
    return _decorate(task, duration)


def _decorate(task, duration):
    def call(*args, **kwargs):
        seconds = duration(*args, **kwargs) if callable(duration) else duration
        seconds = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds or DEFAULT_DURATION)
        state = read_state()
        if state.get("refuse") == "no_gpu":
            raise gr.Error("No GPU is currently available for you after 60s", title="ZeroGPU queue timeout")
        left = state["quota_seconds"] - state["spent_seconds"]
        if state.get("refuse") == "quota" or left < seconds:
            raise gr.Error(f"You have exceeded your free ZeroGPU quota ({seconds:.0f}s requested vs. {max(left, 0):.0f}s "
                           "left). Try again in 23:59:00.", title="ZeroGPU quota exceeded")
        started = time.monotonic()
        try:
            return _run_forked(task, args, kwargs, seconds)
        finally:
            state = read_state()
            state["calls"] += 1
            state["spent_seconds"] += time.monotonic() - started
            write_state(os.environ[STATE_ENV], state)

    call.zerogpu = None   # the marker the real decorator sets
    call.__wrapped__ = task
    return call


def _run_forked(task, args, kwargs, seconds: float):
    context = _fork_context()
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_worker, args=(send, task, args, kwargs), daemon=True)
    worker.start()
    send.close()
    if not receive.poll(seconds):
        worker.kill()
        worker.join()
        raise gr.Error("GPU task aborted", title="ZeroGPU worker error")
    try:
        ok, payload = pickle.loads(receive.recv_bytes())
    except EOFError:
        worker.join()
        raise gr.Error(f"GPU worker exited with code {worker.exitcode}", title="ZeroGPU worker error") from None
    worker.join()
    if not ok:
        raise payload
    return payload


_CONTEXT = None


def _fork_context():
    """Workers forked from a server that imported sslcore but never computed anything.

    ZeroGPU forks the app itself, whose heavy work runs on the GPU in the worker. Emulated on a CPU, the worker
    computes with torch's OpenMP thread pool, which a fork cannot carry over: a child forked after its parent
    ran any torch op on the CPU hangs in its first parallel op. A fork server preloaded with the app's modules
    keeps what matters here (a warm fork: no interpreter start, no imports) without that hazard.
    """
    global _CONTEXT
    if _CONTEXT is None:
        # The fork server is a new interpreter: it finds this module and sslcore through PYTHONPATH.
        here = Path(__file__).resolve().parent
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(here), str(here.parent), os.environ.get("PYTHONPATH")]))
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["zerogpu_emulator", "sslcore.zerogpu", "sslcore.trainer"])
    return _CONTEXT


def _worker(send, task, args, kwargs) -> None:
    try:
        result = (True, task(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - everything goes back to the caller, as ZeroGPU does
        traceback.print_exc()
        result = (False, error)
    send.send_bytes(pickle.dumps(result))
    send.close()
    os._exit(0)   # skip the parent's atexit handlers, inherited by the fork
