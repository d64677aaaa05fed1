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


# ---- more methods' losses: NNCLR, DCL, HSIC Twins, TWIST, DINO, BYOL, SimSiam, VICReg ----
# Same conventions as above: float32 inside, scalar mean over the batch. Where a method stops a gradient
# (a target, a teacher, a support set), the method does it before calling; the values here don't depend on it.

def nearest_neighbours(z, support, support_mask=None):
    """NNCLR's look-up: for each row of ``z``, the most cosine-similar row of ``support`` (L2-normalised).

    ``support_mask`` (support length, bool) leaves out slots that hold no vector yet; while none does, each
    embedding is its own neighbour (so the first step of NNCLR is plain in-batch InfoNCE).
    """
    z, support = l2_normalize(z), l2_normalize(support)
    similarity = ops.matmul(z, ops.transpose(support))
    if support_mask is not None:
        similarity = ops.where(ops.expand_dims(support_mask, 0), similarity, -1e9)
    neighbours = ops.take(support, ops.argmax(similarity, axis=1), axis=0)
    if support_mask is not None:
        neighbours = ops.where(ops.any(support_mask), neighbours, z)
    return neighbours


def nnclr(z1, z2, support, temperature: float = 0.1, support_mask=None):
    """NNCLR (Dwibedi et al. 2021, eq. 3, symmetrised): InfoNCE whose anchor is a view's nearest neighbour.

    Each image's first view is replaced by its nearest neighbour in the support set (a queue of past
    embeddings): a *different* image the model already finds similar, a positive no augmentation could make.
    The neighbour is compared with the other view of the same image (positive) and the other images' views
    (negatives, in-batch). The neighbour carries no gradient: it is a copy from the support set.
    """
    neighbours1 = ops.stop_gradient(nearest_neighbours(z1, support, support_mask))
    neighbours2 = ops.stop_gradient(nearest_neighbours(z2, support, support_mask))
    return (in_batch_info_nce(neighbours1, z2, temperature) + in_batch_info_nce(neighbours2, z1, temperature)) / 2


def dcl(z1, z2, temperature: float = 0.1):
    """Decoupled contrastive loss (Yeh et al. 2022, eq. 6 without weighting): NT-Xent with the positive pair
    taken out of the denominator.

    Over the 2N views: −sim(positive)/τ + log Σ over the 2N − 2 negatives exp(sim/τ). NT-Xent's denominator
    also holds the positive, which couples the two terms: an easy positive shrinks the gradient from the
    negatives too (the "negative-positive coupling"), which hurts most at small batch sizes. Equal to
    lightly's ``DCLLoss`` (no weighting). It can be negative: identical views of mutually orthogonal images
    cost log(2N − 2) − 1/τ; collapse (every view the same) costs log(2N − 2).
    """
    n = ops.shape(z1)[0]
    z = l2_normalize(ops.concatenate([z1, z2], axis=0))
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    index = ops.arange(2 * n, dtype="int32")
    positive = (index + n) % (2 * n)
    positive_logit = ops.take_along_axis(logits, ops.expand_dims(positive, 1), axis=1)[:, 0]
    # Neither the view itself nor its positive is a negative (a large finite value keeps gradients finite).
    excluded = ops.eye(2 * n, dtype=logits.dtype) + ops.one_hot(positive, 2 * n, dtype=logits.dtype)
    return ops.mean(ops.logsumexp(logits - 1e9 * excluded, axis=1) - positive_logit)


def _batch_cross_correlation(z1, z2):
    """Cross-correlation matrix (dim × dim) of two batch-standardised embeddings, as Barlow Twins computes it."""
    n = ops.cast(ops.shape(z1)[0], "float32")
    return ops.matmul(ops.transpose(standardize_over_batch(z1)), standardize_over_batch(z2)) / n


def hsic_twins(z1, z2, lambda_: float = 0.005):
    """HSIC Twins (Tsai et al. 2021, "A note on connecting Barlow Twins with negative-sample-free contrastive
    learning"): Barlow Twins with target 2I − 1 instead of I.

    loss = Σᵢ (1 − Cᵢᵢ)² + λ Σᵢ≠ⱼ (−1 − Cᵢⱼ)². Off-diagonal entries are pushed towards −1 rather than 0, which
    is what maximising the Hilbert-Schmidt independence criterion between the views asks for. (−1 cannot be
    reached by every pair at once for more than two dimensions, so the loss stays positive at its minimum.)
    """
    c = _batch_cross_correlation(z1, z2)
    diagonal = ops.diagonal(c)
    on_diagonal = ops.sum(ops.square(1.0 - diagonal))
    off_diagonal = ops.sum(ops.square(1.0 + c)) - ops.sum(ops.square(1.0 + diagonal))
    return on_diagonal + lambda_ * off_diagonal


def _entropy(probabilities, log_probabilities, axis: int = -1):
    return -ops.sum(probabilities * log_probabilities, axis=axis)


def twist(logits1, logits2):
    """TWIST (Wang et al. 2021, eq. 4): each view's softmax over the embedding dimensions is a distribution
    over "classes"; make the twins agree, each one confident, and the batch use every class.

    loss = ½ mean_i [KL(p1ᵢ‖p2ᵢ) + KL(p2ᵢ‖p1ᵢ)]      consistency between the views
         + ½ mean_i [H(p1ᵢ) + H(p2ᵢ)]                sharpness: each image picks a class
         − ½ [H(mean_i p1ᵢ) + H(mean_i p2ᵢ)]          diversity: the batch spreads over all classes
    Confident, agreeing views spread evenly over the classes reach −log(min(dim, batch)); collapse (every
    image the same distribution) costs 0. The logits are the projection head's output after a non-affine batch norm.
    """
    log_p1 = ops.log_softmax(ops.cast(logits1, "float32"), axis=-1)
    log_p2 = ops.log_softmax(ops.cast(logits2, "float32"), axis=-1)
    p1, p2 = ops.exp(log_p1), ops.exp(log_p2)
    consistency = ops.mean(ops.sum(p1 * (log_p1 - log_p2), axis=1) + ops.sum(p2 * (log_p2 - log_p1), axis=1)) / 2
    sharpness = ops.mean(_entropy(p1, log_p1) + _entropy(p2, log_p2)) / 2
    mean1, mean2 = ops.mean(p1, axis=0), ops.mean(p2, axis=0)
    diversity = (_entropy(mean1, ops.log(ops.maximum(mean1, _EPSILON)))
                 + _entropy(mean2, ops.log(ops.maximum(mean2, _EPSILON)))) / 2
    return consistency + sharpness - diversity


def dino(student_logits, teacher_logits, center, student_temperature: float = 0.1, teacher_temperature: float = 0.04):
    """DINO (Caron et al. 2021, eq. 1): cross-entropy from the teacher's centred, sharpened distribution to
    the student's.

    −Σₖ softmax((t − c)/τ_t)ₖ · log softmax(s/τ_s)ₖ, averaged over the batch; row i of the student is
    compared with row i of the teacher (the method pairs each student view with the *other* view's teacher
    output). Centring (subtracting ``center``, a running mean of the teacher's outputs) stops one dimension
    from dominating; sharpening (τ_t < τ_s) stops the uniform collapse. The two balance each other.
    """
    teacher = ops.softmax((ops.cast(teacher_logits, "float32") - ops.cast(center, "float32")) / teacher_temperature, axis=-1)
    student = ops.log_softmax(ops.cast(student_logits, "float32") / student_temperature, axis=-1)
    return ops.mean(-ops.sum(teacher * student, axis=-1))


def cosine_similarity(a, b):
    """Row-wise cosine similarity of two (batch, dim) tensors."""
    return ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


def byol(prediction, target):
    """BYOL (Grill et al. 2020, eq. 2): mean squared error of the L2-normalised prediction and target,
    ‖p̄ − z̄‖² = 2 − 2·cos(p, z). In [0, 4]; 0 when they point the same way.

    It cannot see collapse: constant predictions equal to constant targets cost 0. The momentum target and
    the predictor are what prevent it; watch ``collapse_std``.
    """
    return ops.mean(2.0 - 2.0 * cosine_similarity(prediction, target))


def negative_cosine(prediction, target):
    """SimSiam (Chen & He 2021, eq. 1): −cos(p, z), averaged over the batch. In [−1, 1].

    Like ``byol`` it cannot see collapse (constant outputs reach −1); the stop-gradient on the target and the
    predictor prevent it, and ``collapse_std`` shows it (the paper's Fig. 2 plots the same quantity).
    """
    return -ops.mean(cosine_similarity(prediction, target))


def _variance_term(z, epsilon: float):
    """VICReg's hinge on the standard deviation of each dimension over the batch (unbiased), kept ≥ 1."""
    z = ops.cast(z, "float32")
    n = ops.cast(ops.shape(z)[0], "float32")
    centred = z - ops.mean(z, axis=0, keepdims=True)
    variance = ops.sum(ops.square(centred), axis=0) / (n - 1.0)
    return ops.mean(ops.relu(1.0 - ops.sqrt(variance + epsilon)))


def _covariance_term(z):
    """VICReg's sum of squared off-diagonal covariances (unbiased), divided by the dimension."""
    z = ops.cast(z, "float32")
    n = ops.cast(ops.shape(z)[0], "float32")
    dim = ops.cast(ops.shape(z)[1], "float32")
    centred = z - ops.mean(z, axis=0, keepdims=True)
    covariance = ops.matmul(ops.transpose(centred), centred) / (n - 1.0)
    return (ops.sum(ops.square(covariance)) - ops.sum(ops.square(ops.diagonal(covariance)))) / dim


def vicreg(z1, z2, invariance_weight: float = 25.0, variance_weight: float = 25.0, covariance_weight: float = 1.0,
           epsilon: float = 1e-4):
    """VICReg (Bardes et al. 2022, eq. 6): invariance + variance + covariance, each term on its own.

    * invariance: mean squared error between the two views' embeddings;
    * variance: mean over dimensions of max(0, 1 − std), averaged over the two views; it is what rules out
      collapse (a constant embedding costs ≈ 1 per view, times its weight);
    * covariance: Σ of squared off-diagonal covariances / dim, summed over the two views; it decorrelates
      dimensions so they don't repeat each other.
    Weights 25, 25, 1 are the paper's. Equal to lightly's ``VICRegLoss`` and the authors' code.
    """
    z1, z2 = ops.cast(z1, "float32"), ops.cast(z2, "float32")
    invariance = ops.mean(ops.square(z1 - z2))
    variance = (_variance_term(z1, epsilon) + _variance_term(z2, epsilon)) / 2
    covariance = _covariance_term(z1) + _covariance_term(z2)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
