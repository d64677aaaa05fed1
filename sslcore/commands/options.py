"""Training settings as command-line flags, shared by the commands that build a TrainConfig."""
from __future__ import annotations

import argparse
import json
from typing import Any

# Training settings that map one-to-one from --flag to TrainConfig field.
_CONFIG_FLAGS: list[tuple[str, str, type, str]] = [
    ("--method", "method", str, "self-supervised method (see the README table)"),
    ("--encoder", "encoder", str, "convnet, resnet18 or resnet50"),
    ("--encoder-width", "encoder_width", int, "channels of the encoder (convnet 128, resnet18 64)"),
    ("--data", "data", str, "digits | tfds:cifar10 | tfds:stl10 | folder:PATH (a folder or a .zip/.tar/.tar.gz of one) | hf:OWNER/NAME[@REVISION][:CONFIG]"),
    ("--image-size", "image_size", int, "images are resized to this square size"),
    ("--test-fraction", "test_fraction", float, "labelled share held out for kNN/probe evaluation"),
    ("--tfds-data-dir", "tfds_data_dir", str, "where tensorflow-datasets keeps prepared data sets"),
    ("--augment", "augment", str, "augmentation preset: weak, strong or simclr"),
    ("--epochs", "epochs", int, "passes over the training images"),
    ("--batch-size", "batch_size", int, "images per step (each gives two views)"),
    ("--optimizer", "optimizer", str, "adam, adamw or sgd"),
    ("--lr", "learning_rate", float, "peak learning rate"),
    ("--weight-decay", "weight_decay", float, "weight decay (adamw, sgd)"),
    ("--schedule", "schedule", str, "cosine or constant"),
    ("--warmup-epochs", "warmup_epochs", float, "linear warm-up length"),
    ("--precision", "precision", str, "fp32, bf16 (mixed bfloat16) or fp16"),
    ("--seed", "seed", int, "seed for weights, augmentation and data order"),
    ("--knn-k", "knn_k", int, "neighbours in the kNN evaluation"),
    ("--keep-checkpoints", "keep_checkpoints", int, "checkpoints kept (0 keeps all)"),
    ("--log-every", "log_every_steps", int, "steps between metric reads (host syncs)"),
    ("--devices", "devices", int, "devices to split each batch over (JAX; 0 = all visible)"),
]


def key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"{flag} takes NAME=VALUE; got {pair!r}")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for flag, field, kind, help_text in _CONFIG_FLAGS:
        parser.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    parser.add_argument("--config", metavar="FILE", help="JSON of training settings (a run's config.json works); "
                                                         "flags given beside it override it")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="a method hyperparameter, e.g. temperature=0.2")
    parser.add_argument("--temperature", type=float, help="shortcut for --param temperature=T")
    parser.add_argument("--augment-param", action="append", metavar="NAME=VALUE", help="override one augmentation setting")
    parser.add_argument("--skip-bad-images", action="store_true", default=None, help="skip unreadable images instead of stopping")
    parser.add_argument("--jit", choices=("auto", "true", "false"), default=None, help="XLA-compile the train step")


def config_values(args) -> dict[str, Any]:
    values = _config_file(args.config) if getattr(args, "config", None) else {}
    values.update({field: getattr(args, field) for _, field, _, _ in _CONFIG_FLAGS if getattr(args, field) is not None})
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
