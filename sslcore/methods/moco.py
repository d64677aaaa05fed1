"""MoCo (He et al. 2020; v2 Chen et al. 2020; v3 Chen et al. 2021): contrast queries with keys from a
slowly moving copy of the encoder, so negatives stay consistent without a huge batch.

v2: a FIFO queue of past keys supplies the negatives. v3-style: no queue, the other keys of the batch are
the negatives and the loss is symmetric over the two views.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from sslcore import losses
from sslcore.methods.base import Method, MethodOutput, MethodParams, hyperparameter
from sslcore.methods.momentum import ema_update, momentum_copy
from sslcore.methods.queue import AutoSizedQueue, Queue


AUTO_QUEUE_SIZE = 4096


@dataclass
class MoCoParams(AutoSizedQueue, MethodParams):
    default_queue_size: ClassVar[int] = AUTO_QUEUE_SIZE

    temperature: float = hyperparameter(0.2, "InfoNCE temperature (MoCo v2: 0.2)")
    momentum: float = hyperparameter(0.99, "EMA momentum of the key encoder (0.99 for small data sets; 0.999 on ImageNet)")
    queue_size: int = hyperparameter(0, "negatives kept in the queue (v2); 0 = auto: 4096, at most half the "
                                     "training images (a longer queue holds each image's own older keys as negatives)")
    version: str = hyperparameter("v2", "'v2': queue of past keys; 'v3': symmetric loss, in-batch negatives, no queue")
    projection_dim: int = hyperparameter(128, "output size of the projection head")
    hidden_dim: int = hyperparameter(512, "hidden size of the projection head")
    hidden_layers: int = hyperparameter(1, "hidden layers in the projection head")
    head_batch_norm: bool = hyperparameter(False, "batch norm inside the projection head only")

    def validate(self, batch_size=None):
        super().validate(batch_size)
        if self.version not in ("v2", "v3"):
            raise ValueError(f"MoCo version must be 'v2' or 'v3'; got {self.version!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.version == "v2" and batch_size is not None and self.queue_size < batch_size:
            raise ValueError(f"queue_size ({self.queue_size}) must be at least the batch size ({batch_size})")


class MoCo(Method):
    Params = MoCoParams
    description = "InfoNCE between a query and its key from a momentum encoder, with a queue of past keys as negatives."

    def __init__(self, params: MoCoParams, feature_dim: int, encoder: keras.Model, **kwargs):
        super().__init__(params, feature_dim, encoder, **kwargs)
        self.momentum_encoder = momentum_copy(encoder, "momentum_encoder")
        self.momentum_head = momentum_copy(self.projection_head, "momentum_projection_head")
        if params.version == "v2":
            if params.queue_size == 0:
                raise ValueError("MoCo's queue size must be resolved for the data set first (MoCoParams.resolve)")
            # Until the queue is full, empty slots are no negatives (the queue's mask leaves them out).
            # (Random vectors there would let queries "win" by collapsing onto the keys' common direction.)
            self.key_queue = Queue(self, params.queue_size, params.projection_dim, name="queue")

    @property
    def queue(self):
        return self.key_queue.vectors

    @property
    def queue_filled(self):
        return self.key_queue.filled

    def keys(self, view, training):
        return ops.stop_gradient(self.momentum_head(self.momentum_encoder(view, training=training), training=training))

    def compute(self, encoder, view1, view2, training=True):
        # Update the key encoder before computing keys, as MoCo's reference code does.
        ema_update(self.momentum_encoder, encoder, self.params.momentum)
        ema_update(self.momentum_head, self.projection_head, self.params.momentum)
        features1 = encoder(view1, training=training)
        query1 = self.projection_head(features1, training=training)
        key2 = self.keys(view2, training)
        t = self.params.temperature
        if self.params.version == "v3":
            query2 = self.projection_head(encoder(view2, training=training), training=training)
            key1 = self.keys(view1, training)
            loss = (losses.in_batch_info_nce(query1, key2, t) + losses.in_batch_info_nce(query2, key1, t)) / 2
        else:
            loss = losses.info_nce(query1, key2, ops.stop_gradient(self.queue), t, queue_mask=self.key_queue.mask())
            self.enqueue(key2)
        return MethodOutput(loss, query1, key2, features1)

    def enqueue(self, keys):
        """First in, first out: the newest keys go to the front, the oldest batch falls off the end."""
        self.key_queue.push(keys)
