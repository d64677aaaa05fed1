"""A first-in-first-out queue of past embeddings, kept as non-trainable weights of the method that owns it.

MoCo v2 keeps past keys as negatives; NNCLR keeps past projections as the support set its positives are
picked from. Both need the same three things, written once here: storage that checkpoints hold (so a
resumed run continues exactly), a FIFO push of one batch, and a mask of the slots that hold a real vector
yet (an empty slot is no negative and no neighbour).

The weights are created on the owning layer (``owner.add_weight``), not on a sub-layer, so their names
(``queue``, ``queue_filled``) and their place among the model's variables stay what MoCo always had.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import keras
from keras import ops

from sslcore import losses


class Queue:
    """``size`` L2-normalised vectors of ``dim`` values, newest first, plus a count of filled slots."""

    def __init__(self, owner: keras.layers.Layer, size: int, dim: int, name: str = "queue"):
        self.size = int(size)
        self.vectors = owner.add_weight(shape=(self.size, dim), name=name, trainable=False, initializer="zeros")
        # How many slots hold a real vector: until the queue is full, the rest are zeros and must be ignored.
        self.filled = owner.add_weight(shape=(), name=f"{name}_filled", trainable=False, initializer="zeros")

    def mask(self):
        """Boolean (size,): True for the slots that hold a vector."""
        return ops.arange(self.size, dtype="float32") < self.filled

    def push(self, vectors) -> None:
        """First in, first out: the newest batch goes to the front, the oldest falls off the end."""
        batch = ops.shape(vectors)[0]
        newest = ops.stop_gradient(losses.l2_normalize(vectors))
        self.vectors.assign(ops.concatenate([newest, self.vectors[: self.size - batch]], axis=0))
        self.filled.assign(ops.minimum(self.filled + ops.cast(batch, "float32"), float(self.size)))


def auto_queue_size(num_images: int | None, default: int) -> int:
    """``default`` slots, but at most half the training images: a longer queue would hold each image's own
    older embeddings (a positive disguised as a negative for MoCo, the image itself as its neighbour for NNCLR)."""
    half = (num_images // 2) if num_images else default
    return max(1, min(default, half))


class AutoSizedQueue:
    """For a method's settings with a ``queue_size`` where 0 means "auto": ``default_queue_size`` slots,
    capped by ``auto_queue_size`` for the data set at hand (mixed in before ``MethodParams``)."""

    default_queue_size: ClassVar[int]

    def resolve(self, num_images):
        if self.queue_size == 0:
            return dataclasses.replace(self, queue_size=auto_queue_size(num_images, self.default_queue_size))
        return self
