"""``deploy``: run this app as your own Hugging Face Space (ZeroGPU by default); ``--dry-run`` lists what it uploads.

Prints the Space's URL on stderr and, as every command does, a JSON summary as the last stdout line. The token is
--token, else HF_TOKEN, else the one saved by ``hf auth login``; it is never printed or written.
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    from sslcore.deploy import DEFAULT_HARDWARE

    parser.add_argument("--space", required=True, help="USER/NAME of the Space (or NAME for your own namespace)")
    parser.add_argument("--hardware", default=DEFAULT_HARDWARE,
                        help=f"Space hardware (default {DEFAULT_HARDWARE}: ZeroGPU, the only one a free account may "
                             "host; cpu-basic, cpu-upgrade, t4-small, a10g-small, ... need a paid plan)")
    parser.add_argument("--private", action="store_true",
                        help="create the Space private (an existing one keeps its visibility)")
    parser.add_argument("--token",
                        help="Hugging Face token with write access (default: HF_TOKEN, then `hf auth login`)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the files and the hardware without contacting the Hub (no token needed)")
    parser.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")


def run(args) -> dict:
    from sslcore import deploy
    from sslcore.hub import HubError

    try:
        result = deploy.deploy(args.space, hardware=args.hardware, private=args.private, token=args.token,
                               endpoint=args.endpoint, dry_run=args.dry_run,
                               progress=lambda message: print(message, file=sys.stderr, flush=True))
    except HubError as error:
        if error.kind in deploy.FIX_FIRST_KINDS:
            raise ValueError(str(error)) from None   # the CLI prints it and exits with 2
        print(f"error: {error}", file=sys.stderr)     # the network or the Hub failed: worth trying again (exit 1)
        raise SystemExit(1) from None
    if not args.dry_run:
        print(f"deployed to {result['url']}", file=sys.stderr)
    return result
