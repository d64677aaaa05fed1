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
    "audit": ("audit", "duplicates, near-duplicates, outliers, unreadable files and quality issues of an image folder"),
    "label": ("label", "a class for every image of a folder from a few labelled examples"),
    "export": ("export", "a run's embeddings of a folder for the Embedding Projector, or as CSV"),
    "push": ("push", "share a finished run on the Hugging Face Hub with its model card"),
    "classify": ("classify", "top classes of image files with a run's or a Hub model's classifier"),
    "deploy": ("deploy", "run this app as your own Hugging Face Space (ZeroGPU by default)"),
}


def command_module(name: str):
    return import_module(f"sslcore.commands.{COMMANDS[name][0]}")
