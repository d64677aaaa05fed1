"""SimSiam (Chen & He 2021): a predictor and a stop-gradient are enough to learn without negatives.

One view's projection, through a small predictor MLP, must point the same way as the other view's
projection, which is treated as a constant (stop-gradient). No negatives, no momentum encoder, no large
batch: the paper shows the stop-gradient is what prevents collapse (without it the loss drops to −1 at
once and the features collapse), so watch ``collapse_std``: the loss cannot show it.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from sslcore import losses
from sslcore.heads import mlp_head
from sslcore.methods.base import Method, MethodOutput, MethodParams, hyperparameter


@dataclass
class SimSiamParams(MethodParams):
    projection_dim: int = hyperparameter(512, "output size of the projector (paper: 2048; CIFAR: 2048 with 2 layers)")
    hidden_dim: int = hyperparameter(512, "hidden size of the projector")
    hidden_layers: int = hyperparameter(2, "hidden layers of the projector (paper: 2, batch norm on every layer)")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projector, its output included (paper: yes)")
    predictor_hidden_dim: int = hyperparameter(128, "bottleneck of the predictor MLP (paper: a quarter of the projection size)")


class SimSiam(Method):
    Params = SimSiamParams
    description = "Negative cosine between one view's prediction and the other view's projection, which gets no gradient."

    def __init__(self, params: SimSiamParams, feature_dim: int, encoder: keras.Model, **kwargs):
        super().__init__(params, feature_dim, encoder, **kwargs)
        self.predictor = mlp_head(params.projection_dim, [params.predictor_hidden_dim], params.projection_dim,
                                  batch_norm=True, name="predictor")

    def build_projection_head(self, feature_dim: int) -> keras.Model:
        p = self.params
        return mlp_head(feature_dim, [p.hidden_dim] * p.hidden_layers, p.projection_dim,
                        batch_norm=p.head_batch_norm, output_batch_norm=p.head_batch_norm, name="projection_head")

    def compute(self, encoder, view1, view2, training=True):
        features1 = encoder(view1, training=training)
        z1 = self.projection_head(features1, training=training)
        z2 = self.projection_head(encoder(view2, training=training), training=training)
        p1 = self.predictor(z1, training=training)
        p2 = self.predictor(z2, training=training)
        # The stop-gradient on the projections is the method: each view is a fixed target for the other.
        loss = (losses.negative_cosine(p1, ops.stop_gradient(z2)) + losses.negative_cosine(p2, ops.stop_gradient(z1))) / 2
        return MethodOutput(loss, p1, z2, features1)
