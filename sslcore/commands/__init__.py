"""The CLI's commands: one module each, with ``add_arguments(parser)`` and ``run(args) -> dict``.

A new command is one module plus one line in ``COMMANDS``.
"""
from __future__ import annotations

from importlib import import_module

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module under sslcore.commands, one-line help)
    "train": ("train", "pretrain an encoder; writes a run folder"),
    "eval": ("evaluate", "kNN and linear accuracy of a run's encoder on labelled images"),
    "bench": ("bench", "images/s of the full train step after compiling"),
}


def command_module(name: str):
    return import_module(f"sslcore.commands.{COMMANDS[name][0]}")
