"""The losses of self-supervised learning, as pure functions of tensors (``keras.ops`` only).

Every function takes projections (or predictions) of shape (batch, dim), casts them to float32 (so a bf16
model still computes its loss in full precision), and returns a scalar: the mean over the batch.
Tests compare each one with an independent NumPy computation on small inputs and on its known extremes.
"""
from __future__ import annotations

from keras import ops

_EPSILON = 1e-12


def l2_normalize(x, axis: int = -1):
    """Unit vectors along ``axis``; the epsilon keeps a zero vector (a collapsed embedding) finite."""
    x = ops.cast(x, "float32")
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), _EPSILON))


def _cross_entropy_at(logits, target_index):
    """Mean cross-entropy of each row of ``logits`` against the class ``target_index[row]``."""
    target_logit = ops.take_along_axis(logits, ops.expand_dims(target_index, 1), axis=1)[:, 0]
    return ops.mean(ops.logsumexp(logits, axis=1) - target_logit)


def nt_xent(z1, z2, temperature: float = 0.1):
    """SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020, eq. 1).

    The 2N views are compared by cosine similarity; each view's positive is the other view of the same
    image and its negatives are the other 2N - 2 views. Equal to lightly's ``NTXentLoss`` (no memory bank).
    """
    n = ops.shape(z1)[0]
    z = l2_normalize(ops.concatenate([z1, z2], axis=0))
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    # A view is never its own negative: push the diagonal to -inf (a large finite value keeps grads finite).
    logits = logits - 1e9 * ops.eye(2 * n, dtype=logits.dtype)
    index = ops.arange(2 * n, dtype="int32")
    positive = (index + n) % (2 * n)
    return _cross_entropy_at(logits, positive)


def info_nce(query, key, queue, temperature: float = 0.2, queue_mask=None):
    """MoCo's InfoNCE (He et al. 2020): the positive logit q·k at index 0, negatives q·queue.

    All vectors are L2-normalised; ``key`` and ``queue`` carry no gradient by the caller's choice
    (they come from the momentum encoder). ``queue_mask`` (queue length, bool) leaves out slots that
    hold no key yet.
    """
    query, key, queue = l2_normalize(query), l2_normalize(key), l2_normalize(queue)
    positive = ops.sum(query * key, axis=1, keepdims=True)
    negatives = ops.matmul(query, ops.transpose(queue))
    if queue_mask is not None:
        negatives = ops.where(ops.expand_dims(queue_mask, 0), negatives, -1e9)
    logits = ops.concatenate([positive, negatives], axis=1) / temperature
    return _cross_entropy_at(logits, ops.zeros((ops.shape(query)[0],), dtype="int32"))


def in_batch_info_nce(query, key, temperature: float = 0.2):
    """InfoNCE with the other keys of the batch as negatives (MoCo v3, without a queue)."""
    query, key = l2_normalize(query), l2_normalize(key)
    logits = ops.matmul(query, ops.transpose(key)) / temperature
    return _cross_entropy_at(logits, ops.arange(ops.shape(query)[0], dtype="int32"))


def standardize_over_batch(z, epsilon: float = 1e-5):
    """Zero mean, unit (biased) variance per dimension over the batch: the paper's non-affine batch norm."""
    z = ops.cast(z, "float32")
    mean = ops.mean(z, axis=0, keepdims=True)
    variance = ops.mean(ops.square(z - mean), axis=0, keepdims=True)
    return (z - mean) * ops.rsqrt(variance + epsilon)


def barlow_twins(z1, z2, lambda_: float = 0.005):
    """Barlow Twins (Zbontar et al. 2021): drive the cross-correlation of the two views to the identity.

    C = z1ᵀ z2 / N on batch-standardised embeddings; loss = Σᵢ (1 − Cᵢᵢ)² + λ Σᵢ≠ⱼ Cᵢⱼ².
    The diagonal term makes the views agree (invariance); the off-diagonal term decorrelates dimensions
    so they cannot all carry the same information (redundancy reduction, which is what prevents collapse).
    """
    n = ops.cast(ops.shape(z1)[0], "float32")
    c = ops.matmul(ops.transpose(standardize_over_batch(z1)), standardize_over_batch(z2)) / n
    diagonal = ops.diagonal(c)
    on_diagonal = ops.sum(ops.square(1.0 - diagonal))
    off_diagonal = ops.sum(ops.square(c)) - ops.sum(ops.square(diagonal))
    return on_diagonal + lambda_ * off_diagonal


# ---- metrics shared by every method (not losses, but the same kind of pure function) ----

def contrastive_accuracy(z1, z2):
    """How often a view's most similar other-view in the batch is its own partner (SimCLR, Table 5).

    Averaged over both directions; chance level is 1 / batch size.
    """
    similarity = ops.matmul(l2_normalize(z1), ops.transpose(l2_normalize(z2)))
    index = ops.arange(ops.shape(z1)[0], dtype="int32")
    rows = ops.cast(ops.equal(ops.cast(ops.argmax(similarity, axis=1), "int32"), index), "float32")
    columns = ops.cast(ops.equal(ops.cast(ops.argmax(similarity, axis=0), "int32"), index), "float32")
    return (ops.mean(rows) + ops.mean(columns)) / 2


def collapse_std(z):
    """Std over the batch of L2-normalised embeddings, averaged over dimensions, times √d.

    About 1 for embeddings spread over the sphere, 0 when every image maps to the same point (collapse).
    """
    z = l2_normalize(z)
    dim = ops.cast(ops.shape(z)[1], "float32")
    return ops.mean(ops.std(z, axis=0)) * ops.sqrt(dim)
