"""``bench``: images/s of the full train step (probe and metrics on) after compiling."""
from __future__ import annotations

from sslcore.commands.options import add_config_flags, config_values


def add_arguments(parser) -> None:
    add_config_flags(parser)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup-steps", type=int, default=3)


def run(args) -> dict:
    from sslcore.bench import run_benchmark
    from sslcore.config import TrainConfig

    return run_benchmark(TrainConfig.from_dict(config_values(args)), steps=args.steps, warmup_steps=args.warmup_steps)
