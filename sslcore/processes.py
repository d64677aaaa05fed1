"""What the operating system and a run's log say about a training process: is it still alive, and why did it fail.

The job manager (``sslcore.jobs``) asks these questions of processes it did not start or that ended without a
final status; everything here reads ``/proc`` or a log file and changes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

# Lines TensorFlow and absl print on their own; never the reason a run failed.
_NOISE = ("W0000", "I0000", "E0000", "WARNING: All log")


def pid_alive(pid: int | None, command_has: bytes = b"sslcore") -> bool:
    """True when ``pid`` is a live (not zombie) process whose command line has ``command_has`` (an sslcore
    process by default): a reused pid of another program is not."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): the signal check is all there is
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return command_has in proc.joinpath("cmdline").read_bytes()
    except (OSError, IndexError):
        return False


def last_error_line(log_path: Path) -> str | None:
    """The reason a training command gave for failing: its ``error:`` line (``sslcore.cli``), else the last line
    that is not library noise; None without a log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    meaningful = [line for line in lines if line.strip() and not line.startswith(_NOISE)]
    return meaningful[-1].strip() if meaningful else None


def explain_failure(message: str) -> str:
    """The trainer's message plus what to do, for the failures a user can fix."""
    lowered = message.lower()
    if "resourceexhausted" in lowered or "out of memory" in lowered or "oom" in lowered.split():
        return f"{message} — out of memory: lower the batch size or the image size, or pick a smaller encoder, then start again."
    return message
