"""Small shared pieces for the tests: a tiny, fast training configuration on digits, free ports, the CLI as a
subprocess, waiting on a condition, and whether the browser tests can run."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from sslcore.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


# SimCLR's settings written out, so the shared runs do not move when a library default does.
SIMCLR_PINNED = {"temperature": 0.1, "projection_dim": 128, "hidden_dim": 128, "hidden_layers": 1, "head_batch_norm": False}


# The settings of the session's shared finished run (the ``tiny_run`` fixture in tests/conftest.py).
TINY_RUN = dict(epochs=1, encoder_width=16, method="simclr", method_params=SIMCLR_PINNED)


def tiny_config(**overrides) -> TrainConfig:
    """Digits at 32 px with a narrow convnet: a whole epoch takes about a second on 2 CPU cores."""
    # fp32, not "auto": what a short run learns must not depend on whether the test machine's CPU has AMX (bf16).
    settings = dict(data="digits", image_size=32, encoder="convnet", encoder_width=32, epochs=2, batch_size=128,
                    log_every_steps=3, seed=0, precision="fp32")
    settings.update(overrides)
    return TrainConfig(**settings)


class StopAfter:
    """A stop signal that fires after ``n`` checks: stops a run mid-epoch at a known step."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def is_set(self):
        self.calls += 1
        return self.calls > self.n


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cli(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python -m sslcore ARGS`` in a fresh process (for what only a real process shows: exit codes, --backend,
    imports); ``env`` adds to (or, with None values, removes from) this process's environment."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.run([sys.executable, "-m", "sslcore", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=environment, timeout=timeout)


def wait_until(condition, timeout=120.0, every=0.2, what="the condition"):
    """Poll ``condition`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} was not met within {timeout:g} s")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


class FakeClock:
    """A clock for code that takes one (``clock=``): time passes only when a test moves ``now``."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
