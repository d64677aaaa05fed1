"""What every method shares: the template of a forward pass, and hyperparameters with validation.

A method is a Keras layer that owns its heads (and any momentum encoder or queue, so they are saved in
checkpoints with everything else) and supplies its loss. The default forward pass encodes both views
with the online encoder and projects them; methods that need more (a momentum encoder) override
``compute``. Everything else (augmentation, the probe, metrics, the train step) is the model's job.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import keras

from sslcore.heads import mlp_head


def hyperparameter(default, help: str):
    """A dataclass field carrying its own documentation (README table, CLI help, app tooltips)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class MethodParams:
    """Base for each method's hyperparameters: defaults in one place, checked before any work starts."""

    def validate(self, batch_size: int | None = None) -> None:
        """Checks every method shares: no negative number, and a temperature (any ``*temperature`` setting)
        strictly positive, since the logits are divided by it. Methods add their own checks."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{field.name} must not be negative; got {value}")
            if field.name.endswith("temperature") and value <= 0:
                raise ValueError(f"{field.name} must be positive; got {value}")

    def resolve(self, num_images: int | None) -> "MethodParams":
        """Settings whose default depends on the data set (e.g. MoCo's queue) are fixed here."""
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "MethodParams":
        values = dict(values or {})
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"Unknown setting(s) {', '.join(unknown)}; this method takes: {', '.join(known)}")
        converted = {}
        for name, value in values.items():
            default = known[name].default
            # Values from the CLI arrive as strings: convert them to the type of the default.
            if isinstance(value, str) and not isinstance(default, str):
                value = type(default)(value) if not isinstance(default, bool) else value.lower() in ("1", "true", "yes")
            converted[name] = value
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        return [{"name": field.name, "default": field.default, "help": field.metadata.get("help", "")}
                for field in dataclasses.fields(cls)]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class MethodOutput:
    loss: Any
    z1: Any          # the embeddings the loss compares (for contrastive accuracy and the collapse indicator)
    z2: Any
    features: Any    # online encoder features of the first view (the online probe trains on them)


class Method(keras.layers.Layer):
    """Template for a self-supervised method. Subclasses set ``Params`` and implement ``loss``."""

    Params: ClassVar[type[MethodParams]] = MethodParams
    description: ClassVar[str] = ""
    #: The run's length in train steps, given by the trainer before the first step (``Trainer.prepare``).
    #: Schedules over training read it (BYOL's and DINO's momentum, ``momentum.cosine_momentum``); it is a
    #: constant of the run, so compiled steps may bake it in. None outside a trainer: schedules stay at their start.
    total_steps: int | None = None

    def __init__(self, params: MethodParams, feature_dim: int, encoder: keras.Model, **kwargs):
        super().__init__(name=type(self).__name__.lower(), **kwargs)
        self.params = params
        self.feature_dim = feature_dim
        self.projection_head = self.build_projection_head(feature_dim)

    def build_projection_head(self, feature_dim: int) -> keras.Model:
        p = self.params
        return mlp_head(feature_dim, [p.hidden_dim] * p.hidden_layers, p.projection_dim,
                        batch_norm=getattr(p, "head_batch_norm", False), name="projection_head")

    def compute(self, encoder: keras.Model, view1, view2, training: bool = True) -> MethodOutput:
        features1 = encoder(view1, training=training)
        features2 = encoder(view2, training=training)
        z1 = self.projection_head(features1, training=training)
        z2 = self.projection_head(features2, training=training)
        return MethodOutput(self.loss(z1, z2), z1, z2, features1)

    def loss(self, z1, z2):
        raise NotImplementedError
