"""TWIST (Wang et al. 2021, "Self-supervised learning by estimating twin class distributions").

The projection head's output, batch-normalised and put through a softmax, is read as a distribution over
``projection_dim`` made-up classes. The two views must give the same distribution (consistency), each
must be confident (sharpness) and the batch must use all classes (diversity): no negatives, no momentum
network, no hyperparameter in the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras

from sslcore import losses
from sslcore.heads import mlp_head
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class TWISTParams(MethodParams):
    projection_dim: int = hyperparameter(512, "number of classes the softmax is over (paper: 4096 on ImageNet)")
    hidden_dim: int = hyperparameter(512, "hidden size of the projection head")
    hidden_layers: int = hyperparameter(2, "hidden layers of the projection head")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projection head (paper: yes)")


class TWIST(Method):
    Params = TWISTParams
    description = "Softmax over the embedding: symmetric KL between the views + mean entropy − entropy of the batch mean."

    def build_projection_head(self, feature_dim: int) -> keras.Model:
        # The paper's head ends in a batch norm without scale or shift before the softmax: it keeps every
        # class in use across the batch from the first step.
        p = self.params
        return mlp_head(feature_dim, [p.hidden_dim] * p.hidden_layers, p.projection_dim,
                        batch_norm=p.head_batch_norm, output_batch_norm=True, name="projection_head")

    def loss(self, z1, z2):
        return losses.twist(z1, z2)
