"""Heads that sit on top of the encoder: projection, predictor and the linear probe.

A projection head maps features to the space where the loss is computed. SimCLR found that the loss is
best applied after a small MLP while the features *before* it transfer better, which is why evaluation
always uses encoder features and never projections.
"""
from __future__ import annotations

import keras
from keras import layers


def mlp_head(input_dim: int, hidden_dims: list[int] | tuple[int, ...], output_dim: int, *,
             batch_norm: bool = False, output_batch_norm: bool = False, name: str = "projection_head") -> keras.Sequential:
    """Linear → (BatchNorm) → ReLU for each hidden size, then a linear output (optionally batch-normalised).

    ``batch_norm`` is the head-only batch norm of SimCLR v2 / Barlow Twins / BYOL: it stabilises training
    without touching the encoder.
    """
    stack = [keras.Input((input_dim,))]
    for index, size in enumerate(hidden_dims):
        stack.append(layers.Dense(size, use_bias=not batch_norm, name=f"{name}_dense{index + 1}"))
        if batch_norm:
            stack.append(layers.BatchNormalization(name=f"{name}_bn{index + 1}"))
        stack.append(layers.ReLU(name=f"{name}_relu{index + 1}"))
    stack.append(layers.Dense(output_dim, name=f"{name}_output"))
    if output_batch_norm:
        stack.append(layers.BatchNormalization(center=False, scale=False, name=f"{name}_output_bn"))
    return keras.Sequential(stack, name=name)


PROBE_LEARNING_RATE_MULTIPLIER = 10.0


def linear_probe(input_dim: int, num_classes: int, learning_rate_multiplier: float = PROBE_LEARNING_RATE_MULTIPLIER) -> keras.Sequential:
    """A linear classifier on stop-gradient encoder features: it measures, it never teaches.

    It has to keep up with an encoder that changes under it, often in few steps (digits: 5 steps an
    epoch), so it learns faster than the encoder:
    * features are standardised first (batch norm without learnt scale or shift, so the probe stays
      linear), as the offline protocol standardises them before logistic regression;
    * its weights start at zero and its output is scaled by ``learning_rate_multiplier``: with Adam
      (a fixed step per weight) that multiplies the probe's effective learning rate, with one optimizer
      for the whole model on every backend.
    """
    return keras.Sequential([
        keras.Input((input_dim,)),
        layers.BatchNormalization(center=False, scale=False, name="linear_probe_standardize"),
        layers.Dense(num_classes, kernel_initializer="zeros", name="linear_probe_logits"),
        layers.Rescaling(learning_rate_multiplier, name="linear_probe_learning_rate_multiplier"),
    ], name="linear_probe")
