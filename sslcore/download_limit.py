"""How much one model or dataset a visitor names may make a public server download from the Hub.

A visitor on a Space can name any public repository: a start for training, an encoder for the audit, an ``hf:`` data
source. Without a limit one name fills the server's disk (which every visitor shares) and its memory when decoded. So
on a public server (``sslcore.credentials.on_public_server``) the files a load would fetch are sized first, from the
Hub's file metadata, and a load over ``SSLCORE_HUB_DOWNLOAD_MB`` (default 1024) is refused before anything is
downloaded. On the user's own machine there is no limit: their disk, their choice.
"""
from __future__ import annotations

from typing import Iterable

from sslcore import credentials

LIMIT_ENV = "SSLCORE_HUB_DOWNLOAD_MB"
DEFAULT_MB = 1024.0   # CIFAR-10's parquet files are 120 MB, a timm resnet18 47 MB, a pushed sslcore convnet < 10 MB
MB = 1024 ** 2


def limit_bytes() -> int | None:
    """The most one load may download here: None on the user's own machine."""
    if not credentials.on_public_server():
        return None
    return int(credentials.positive_setting(LIMIT_ENV, DEFAULT_MB) * MB)


def over_limit(name: str, sizes: Iterable[int | None]) -> str | None:
    """Why loading ``name``, whose files have ``sizes`` (bytes), is refused here; None when it may be loaded."""
    limit = limit_bytes()
    if limit is None:
        return None
    total = sum(size or 0 for size in sizes)
    if total <= limit:
        return None
    return (f"{name} is {total / MB:,.0f} MB to download, more than this Space downloads for one model or dataset "
            f"({limit / MB:,.0f} MB, {LIMIT_ENV}). Choose a smaller one, or run the lab on your own machine.")
