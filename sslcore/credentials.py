"""Whose Hugging Face credentials a read from the Hub may use.

On the user's own machine an empty token means "mine": ``HF_TOKEN`` or the ``hf auth login`` token, as everywhere in
the Hugging Face tools. On a Space (``SPACE_ID`` set, or ``SSLCORE_PUBLIC=1``) the server's credentials are the
Space owner's, and every visitor's request runs with them: a visitor who names the owner's private model or dataset
(as a start for training, an encoder for the audit, a data source) must not get it. So there a read without a token of the visitor's own is
anonymous: public repositories only. Every Hub read in sslcore asks ``read_token`` (the pages, the training process
a Space's job manager starts, a ZeroGPU chunk), so no caller can forget it.
"""
from __future__ import annotations

import os

SPACE_ENV = "SPACE_ID"         # set by Hugging Face in every Space's environment
PUBLIC_ENV = "SSLCORE_PUBLIC"  # "1": any other public deployment, with a Space's rules


def on_public_server() -> bool:
    """A Space serves strangers; ``SSLCORE_PUBLIC=1`` gives the same rules to any other public deployment."""
    return bool(os.environ.get(SPACE_ENV)) or os.environ.get(PUBLIC_ENV) == "1"


def size_limit_bytes(name: str, public_default_mb: float) -> int | None:
    """A size limit in MB from the environment variable ``name``; unset, ``public_default_mb`` on a public server
    (where strangers choose what is stored or decoded) and no limit on the user's own machine."""
    if os.environ.get(name):
        return int(positive_setting(name, public_default_mb) * 1024 ** 2)
    return int(public_default_mb * 1024 ** 2) if on_public_server() else None


def server_credentials_allowed() -> bool:
    """The server's HF_TOKEN / saved login may stand in for an empty field only where the server is the user's own."""
    return not on_public_server()


def read_token(given: str | bool | None = None) -> str | bool | None:
    """The ``token`` argument for a huggingface_hub read: the caller's own token; ``False`` (anonymous) when asked
    for, or when none is given on a Space; else None (huggingface_hub then uses this machine's credentials)."""
    if isinstance(given, str):
        return given.strip() or read_token(None)
    if given is False or not server_credentials_allowed():
        return False
    return None


def positive_setting(name: str, default: float) -> float:
    """A public server's numeric setting from the environment variable ``name`` (``default`` when unset), refused
    with its name unless it is a positive number."""
    value = os.environ.get(name)
    if not value:
        return float(default)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive; got {value!r}")
    return number
