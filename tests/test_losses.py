"""Each loss against an independent NumPy computation on small inputs, and at its known extremes."""
import numpy as np
import pytest
from keras import ops

from sslcore import losses

pytestmark = pytest.mark.core


def value(x):
    return float(ops.convert_to_numpy(x))


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_nt_xent(z1, z2, t):
    z = unit(np.concatenate([z1, z2]).astype(np.float64))
    n2 = len(z)
    sim = z @ z.T / t
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        denominator = sum(np.exp(sim[i, k]) for k in range(n2) if k != i)
        total += -np.log(np.exp(sim[i, positive]) / denominator)
    return total / n2


def reference_barlow(z1, z2, lam):
    def standardise(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
    c = standardise(z1).T @ standardise(z2) / len(z1)
    on = sum((1 - c[i, i]) ** 2 for i in range(len(c)))
    off = sum(c[i, j] ** 2 for i in range(len(c)) for j in range(len(c)) if i != j)
    return on + lam * off


def reference_info_nce(q, k, queue, t):
    q, k, queue = unit(q), unit(k), unit(queue)
    total = 0.0
    for i in range(len(q)):
        logits = np.concatenate([[q[i] @ k[i]], queue @ q[i]]) / t
        total += -logits[0] + np.log(np.sum(np.exp(logits)))
    return total / len(q)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(rng, temperature):
    z1, z2 = rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=(6, 5)).astype("float32")
    assert value(losses.nt_xent(z1, z2, temperature)) == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-4)


def test_nt_xent_extremes():
    n = 8
    orthonormal = np.eye(n, dtype="float32")
    # Identical views of well-separated images: the positive wins against 2N-2 negatives of similarity 0.
    perfect = np.log(1 + (2 * n - 2) * np.exp(-1 / 0.1))
    assert value(losses.nt_xent(orthonormal, orthonormal, 0.1)) == pytest.approx(perfect, abs=2e-5)
    # Collapse: every view equal, so the positive is one of 2N-1 equally likely candidates.
    collapsed = np.ones((n, 4), dtype="float32")
    assert value(losses.nt_xent(collapsed, collapsed, 0.1)) == pytest.approx(np.log(2 * n - 1), rel=1e-4)


def test_barlow_twins_matches_reference(rng):
    z1, z2 = rng.normal(size=(16, 6)).astype("float32"), rng.normal(size=(16, 6)).astype("float32")
    for lam in (0.005, 0.5):
        assert value(losses.barlow_twins(z1, z2, lam)) == pytest.approx(reference_barlow(z1, z2, lam), rel=1e-4)


def test_barlow_twins_extremes():
    # Identical views whose dimensions are uncorrelated: C = I, so the loss is 0.
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype="float32")
    assert value(losses.barlow_twins(signs, signs)) == pytest.approx(0.0, abs=1e-4)
    # Collapse: constant embeddings standardise to 0, C = 0, so each of the d diagonal terms costs 1.
    collapsed = np.ones((8, 5), dtype="float32")
    assert value(losses.barlow_twins(collapsed, collapsed)) == pytest.approx(5.0, rel=1e-4)


def test_info_nce_matches_reference(rng):
    q, k, queue = (rng.normal(size=s).astype("float32") for s in ((5, 4), (5, 4), (7, 4)))
    assert value(losses.info_nce(q, k, queue, 0.2)) == pytest.approx(reference_info_nce(q, k, queue, 0.2), rel=1e-4)


def test_info_nce_extremes():
    q = np.eye(4, dtype="float32")[:2]
    queue = np.eye(4, dtype="float32")[2:]
    assert value(losses.info_nce(q, q, queue, 0.1)) == pytest.approx(np.log(1 + 2 * np.exp(-10)), abs=2e-6)
    collapsed = np.ones((3, 4), dtype="float32")
    assert value(losses.info_nce(collapsed, collapsed, np.ones((6, 4), "float32"), 0.1)) == pytest.approx(np.log(7), rel=1e-4)


def test_in_batch_info_nce_is_info_nce_with_other_keys_as_queue(rng):
    q, k = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    expected = np.mean([reference_info_nce(q[i:i + 1], k[i:i + 1], np.delete(k, i, axis=0), 0.3) for i in range(4)])
    assert value(losses.in_batch_info_nce(q, k, 0.3)) == pytest.approx(expected, rel=1e-4)


def test_contrastive_accuracy_and_collapse_indicator(rng):
    distinct = np.eye(6, dtype="float32")
    assert value(losses.contrastive_accuracy(distinct, distinct)) == 1.0
    shuffled = distinct[[1, 2, 3, 4, 5, 0]]
    assert value(losses.contrastive_accuracy(distinct, shuffled)) == 0.0
    assert value(losses.collapse_std(np.ones((32, 16), "float32"))) == pytest.approx(0.0, abs=1e-5)
    spread = rng.normal(size=(4096, 64)).astype("float32")
    assert value(losses.collapse_std(spread)) == pytest.approx(1.0, abs=0.05)


def test_losses_are_finite_for_zero_vectors():
    zeros = np.zeros((4, 3), "float32")
    assert np.isfinite(value(losses.nt_xent(zeros, zeros, 0.1)))
    assert np.isfinite(value(losses.info_nce(zeros, zeros, zeros, 0.1)))
