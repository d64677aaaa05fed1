"""A timm checkpoint from the Hub (``hf://timm/resnet18.a1_in1k``) as sslcore's ``resnet18``, for ``train --init``.

timm publishes its pretrained models on the Hub as ``config.json`` (an ``"architecture"`` and a ``pretrained_cfg``
with the input size and normalisation) and ``model.safetensors`` (PyTorch's state dict). sslcore's resnet18 above
64 px is laid out as timm's ``resnet18`` (sslcore.encoders: the same stem, blocks, padding, batch-norm epsilon and
ImageNet input normalisation), so its weights map across by name, read with the ``safetensors`` package alone; the
classifier (``fc``) is left behind. Other architectures are refused by name: a wrong mapping would not fail, it would
quietly compute something else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sslcore.encoders import IMAGENET_MEAN, IMAGENET_STD, build_encoder

SUPPORTED = ("resnet18",)
STAGES, BLOCKS_PER_STAGE = 4, 2
SMALLEST_IMAGE = 65   # at 64 px and below sslcore's resnet18 has the CIFAR stem, which timm's 7×7 weights do not fit


def is_timm_checkpoint(folder: Path) -> bool:
    """A Hub snapshot with timm's files (its config.json names an architecture), as opposed to an sslcore push."""
    config = _config(folder)
    return config is not None and "architecture" in config


def read(folder: Path, source: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The checkpoint's tensors and config.json, or a ValueError that says what is wrong with them."""
    config = _config(folder) or {}
    architecture = config.get("architecture")
    if architecture not in SUPPORTED:
        raise ValueError(f"--init {source}: a timm {architecture!r} checkpoint; sslcore can start from timm's "
                         f"{', '.join(SUPPORTED)} (sslcore's encoder of the same layout)")
    settings = config.get("pretrained_cfg", {})
    mean, std = settings.get("mean", IMAGENET_MEAN), settings.get("std", IMAGENET_STD)
    if not (np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD)):
        raise ValueError(f"--init {source}: its inputs are normalised with mean {mean} and std {std}; sslcore's "
                         f"resnet18 normalises with ImageNet's ({list(IMAGENET_MEAN)}, {list(IMAGENET_STD)})")
    weights_path = folder / "model.safetensors"
    if not weights_path.exists():
        raise ValueError(f"--init {source}: the repository has no model.safetensors (timm's weights file)")
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(weights_path))
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign file gets one message
        raise ValueError(f"--init {source}: model.safetensors cannot be read ({type(error).__name__}: {error})") from None
    return tensors, config


def image_size(config: dict[str, Any]) -> int:
    """The size the weights were trained at (``pretrained_cfg.input_size``: channels, height, width)."""
    size = config.get("pretrained_cfg", {}).get("input_size", [3, 224, 224])
    return int(size[-1])


def encoder_from(tensors: dict[str, np.ndarray], size: int, source: str):
    """sslcore's resnet18 at ``size`` px holding the checkpoint's weights."""
    width = _tensor(tensors, "conv1.weight", source).shape[0]
    encoder = build_encoder("resnet18", size, int(width))
    for keras_name, torch_name in _layer_names():
        layer = encoder.get_layer(keras_name)
        if keras_name.endswith(("_conv", "_conv1", "_conv2", "_proj")):
            # PyTorch stores a convolution (out, in, height, width); Keras (height, width, in, out).
            values = [np.transpose(_tensor(tensors, f"{torch_name}.weight", source), (2, 3, 1, 0))]
        else:
            values = [_tensor(tensors, f"{torch_name}.{key}", source)
                      for key in ("weight", "bias", "running_mean", "running_var")]
        expected = [tuple(variable.shape) for variable in layer.weights]
        if [value.shape for value in values] != expected:
            raise ValueError(f"--init {source}: {torch_name} has shapes {[value.shape for value in values]}, "
                             f"where timm's resnet18 of width {width} has {expected}")
        layer.set_weights(values)
    return encoder


def _layer_names():
    """(sslcore layer, timm state-dict prefix) for every layer with weights."""
    yield "stem_conv", "conv1"
    yield "stem_bn", "bn1"
    for stage in range(1, STAGES + 1):
        for block in range(BLOCKS_PER_STAGE):
            ours, theirs = f"stage{stage}_block{block + 1}", f"layer{stage}.{block}"
            for index in (1, 2):
                yield f"{ours}_conv{index}", f"{theirs}.conv{index}"
                yield f"{ours}_bn{index}", f"{theirs}.bn{index}"
            if stage > 1 and block == 0:
                yield f"{ours}_proj", f"{theirs}.downsample.0"
                yield f"{ours}_proj_bn", f"{theirs}.downsample.1"


def _tensor(tensors: dict[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in tensors:
        raise ValueError(f"--init {source}: model.safetensors has no {key!r}; it is not timm's resnet18")
    return np.asarray(tensors[key], dtype="float32")


def _config(folder: Path) -> dict | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None
