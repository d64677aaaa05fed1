"""Training settings as command-line flags, shared by the commands that build a TrainConfig."""
from __future__ import annotations

import argparse
import functools
import json
from typing import Any

def _config_flags() -> list[dict[str, Any]]:
    """The TrainConfig settings that are flags, as the config describes them (sslcore.config.setting)."""
    from sslcore.config import TrainConfig

    return [row for row in TrainConfig.describe() if row["flag"]]


def _read_flag(text: str, *, kind: type, flag: str, parse) -> Any:
    try:
        return parse(text, kind, flag)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"{flag} takes NAME=VALUE; got {pair!r}")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    from sslcore.config import parse_value

    for row in _config_flags():
        reader = functools.partial(_read_flag, kind=row["kind"], flag=row["flag"], parse=parse_value)
        help_text = row["help"] + (f" ({', '.join(row['choices'])}; default {row['default']})" if row["choices"]
                                   else f" (default {row['default']})")
        # Choices are checked by TrainConfig.validate, so a wrong one gets the same message from the CLI and the app.
        parser.add_argument(row["flag"], dest=row["name"], type=reader, default=None, help=help_text)
    parser.add_argument("--config", metavar="FILE", help="JSON of training settings (a run's config.json works); "
                                                         "flags given beside it override it")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="a method hyperparameter, e.g. temperature=0.2")
    parser.add_argument("--temperature", type=float, help="shortcut for --param temperature=T")
    parser.add_argument("--augment-param", action="append", metavar="NAME=VALUE", help="override one augmentation setting")
    parser.add_argument("--skip-bad-images", action="store_true", default=None, help="skip unreadable images instead of stopping")
    parser.add_argument("--jit", choices=("auto", "true", "false"), default=None, help="XLA-compile the train step")


def config_values(args) -> dict[str, Any]:
    values = _config_file(args.config) if getattr(args, "config", None) else {}
    values.update({row["name"]: getattr(args, row["name"]) for row in _config_flags()
                   if getattr(args, row["name"]) is not None})
    method_values = {**values.get("method_params", {}), **key_values(args.param, "--param")}
    if args.temperature is not None:
        method_values["temperature"] = args.temperature
    if method_values:
        values["method_params"] = method_values
    augment_values = {k: json.loads(v) if v[:1] in "[0123456789.-tf" else v
                      for k, v in key_values(args.augment_param, "--augment-param").items()}
    if augment_values:
        values["augment_params"] = {**values.get("augment_params", {}), **augment_values}
    if args.skip_bad_images:
        values["skip_bad_images"] = True
    if args.jit is not None:
        values["jit_compile"] = {"auto": "auto", "true": True, "false": False}[args.jit]
    return values


def _config_file(path: str) -> dict[str, Any]:
    """Settings from a JSON file, without what a run folder records beside them (backend, class names)."""
    from sslcore.config import TrainConfig

    try:
        with open(path) as handle:
            saved = json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--config {path} is not valid JSON ({error})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"--config {path} must hold a JSON object of settings")
    return TrainConfig.from_run_config(saved).to_dict()
