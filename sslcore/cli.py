"""``python -m sslcore <command>``: headless training, evaluation and benchmarks (see ``sslcore.commands``)."""
from __future__ import annotations

import argparse
import json
import sys

from sslcore.commands import COMMANDS, command_module

EXIT_BAD_INPUT, EXIT_FAILED = 2, 1


def build_parser() -> argparse.ArgumentParser:
    # --backend is read by __main__ before Keras is imported; it is declared here so it may stand
    # before or after the command.
    backend_flag = argparse.ArgumentParser(add_help=False)
    backend_flag.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=argparse.SUPPRESS,
                              help="Keras backend (default: the fastest measured for this device)")
    parser = argparse.ArgumentParser(prog="python -m sslcore", description=__doc__, parents=[backend_flag])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command_module(name).add_arguments(commands.add_parser(name, parents=[backend_flag], help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sslcore.data import DataError
    from sslcore.trainer import TrainingDiverged

    try:
        result = command_module(args.command).run(args)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result, default=float), flush=True)
    return 0
