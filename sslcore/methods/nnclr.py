"""NNCLR (Dwibedi et al. 2021): contrast a view's *nearest neighbour* with the other view of its image.

Augmentation alone only makes positives of the same image. NNCLR keeps a support set (a queue of past
embeddings) and uses each embedding's nearest neighbour there as the anchor: another image the model
already finds similar, which brings semantic variation that no crop or colour jitter can.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import keras

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter
from sslcore.methods.queue import AutoSizedQueue, Queue

AUTO_QUEUE_SIZE = 10_000


@dataclass
class NNCLRParams(AutoSizedQueue, MethodParams):
    default_queue_size: ClassVar[int] = AUTO_QUEUE_SIZE

    temperature: float = hyperparameter(0.1, "InfoNCE temperature (paper: 0.1)")
    queue_size: int = hyperparameter(0, "support set size; 0 = auto: 10,000, at most half the training images "
                                        "(a longer one holds each image's own past embeddings, so its neighbour is itself; paper: 98,304 on ImageNet)")
    projection_dim: int = hyperparameter(128, "output size of the projection head")
    hidden_dim: int = hyperparameter(512, "hidden size of the projection head")
    hidden_layers: int = hyperparameter(1, "hidden layers in the projection head")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projection head (paper: yes)")

    def validate(self, batch_size=None):
        super().validate(batch_size)
        if batch_size is not None and 0 < self.queue_size < batch_size:
            raise ValueError(f"queue_size ({self.queue_size}) must be at least the batch size ({batch_size})")


class NNCLR(Method):
    Params = NNCLRParams
    description = "InfoNCE between each view's nearest neighbour in a support queue and the other view."

    def __init__(self, params: NNCLRParams, feature_dim: int, encoder: keras.Model, **kwargs):
        super().__init__(params, feature_dim, encoder, **kwargs)
        if params.queue_size == 0:
            raise ValueError("NNCLR's support set size must be resolved for the data set first (NNCLRParams.resolve)")
        self.support_set = Queue(self, params.queue_size, params.projection_dim, name="support_set")

    def compute(self, encoder, view1, view2, training=True):
        output = super().compute(encoder, view1, view2, training)   # looks neighbours up in the support set...
        self.support_set.push(output.z1)                               # ...then the batch joins it, so no view is its own neighbour
        return output

    def loss(self, z1, z2):
        return losses.nnclr(z1, z2, self.support_set.vectors, self.params.temperature,
                            support_mask=self.support_set.mask())
