"""Each loss against an independent NumPy computation on small inputs (the extra methods' losses written from each
paper's formula), and at its known extremes (collapse, identical views).

Where a loss cannot see collapse (BYOL, SimSiam: constant outputs reach the best value), the test says so
and checks that ``collapse_std``, the metric every run logs, does see it.
"""
import numpy as np
import pytest
from keras import ops

from sslcore import losses

pytestmark = pytest.mark.core


def value(x):
    return float(ops.convert_to_numpy(x))


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def normal(rng, *shape):
    return rng.normal(size=shape).astype("float32")


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


# ---- DCL (Yeh et al. 2022, eq. 6 with w = 1) ----

def reference_dcl(z1, z2, t):
    views = unit(np.concatenate([z1, z2]))
    n2, n = len(views), len(z1)
    total = 0.0
    for i in range(n2):
        positive = (i + n) % n2
        negatives = sum(np.exp(views[i] @ views[k] / t) for k in range(n2) if k not in (i, positive))
        total += -views[i] @ views[positive] / t + np.log(negatives)
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_dcl_matches_reference(rng, temperature):
    z1, z2 = normal(rng, 6, 5), normal(rng, 6, 5)
    assert value(losses.dcl(z1, z2, temperature)) == pytest.approx(reference_dcl(z1, z2, temperature), rel=1e-4)


def test_dcl_is_nt_xent_without_the_positive_in_the_denominator(rng):
    z1, z2 = normal(rng, 8, 4), normal(rng, 8, 4)
    # NT-Xent = log(e^pos + Σneg) − pos > log(Σneg) − pos = DCL, view by view.
    assert value(losses.dcl(z1, z2, 0.2)) < value(losses.nt_xent(z1, z2, 0.2))


def test_dcl_extremes():
    n, t = 8, 0.1
    orthonormal = np.eye(n, dtype="float32")
    # Identical views of orthogonal images: −1/τ for the positive, 2N − 2 negatives of similarity 0.
    assert value(losses.dcl(orthonormal, orthonormal, t)) == pytest.approx(np.log(2 * n - 2) - 1 / t, abs=1e-4)
    # Collapse: the positive is no better than the 2N − 2 negatives, all at similarity 1.
    collapsed = np.ones((n, 4), "float32")
    assert value(losses.dcl(collapsed, collapsed, t)) == pytest.approx(np.log(2 * n - 2), rel=1e-4)


# ---- NNCLR (Dwibedi et al. 2021, eq. 3, symmetrised) ----

def reference_nearest(z, support):
    return np.array([support[np.argmax([cos(row, s) for s in support])] for row in z])


def reference_nnclr(z1, z2, support, t):
    def one_way(anchor_views, other_views):
        anchors = unit(reference_nearest(anchor_views, support))
        others = unit(other_views)
        total = 0.0
        for i in range(len(anchors)):
            logits = np.array([anchors[i] @ others[k] / t for k in range(len(others))])
            total += -logits[i] + np.log(np.sum(np.exp(logits)))
        return total / len(anchors)
    return (one_way(z1, z2) + one_way(z2, z1)) / 2


def test_nnclr_matches_reference(rng):
    z1, z2, support = normal(rng, 5, 4), normal(rng, 5, 4), normal(rng, 9, 4)
    expected = reference_nnclr(z1, z2, support, 0.1)
    assert value(losses.nnclr(z1, z2, support, 0.1)) == pytest.approx(expected, rel=1e-4)


def test_nearest_neighbour_is_the_most_similar_filled_support_vector(rng):
    z, support = normal(rng, 6, 3), normal(rng, 10, 3)
    found = ops.convert_to_numpy(losses.nearest_neighbours(z, support))
    np.testing.assert_allclose(found, unit(reference_nearest(z, support)), atol=1e-6)
    # Empty slots (mask False) are never picked, even when they would be the best match.
    mask = np.array([True] * 4 + [False] * 6)
    decoy = np.concatenate([support[:4], unit(z)[:1].astype("float32").repeat(6, axis=0)])
    found = ops.convert_to_numpy(losses.nearest_neighbours(z, decoy, mask))
    np.testing.assert_allclose(found, unit(reference_nearest(z, support[:4])), atol=1e-6)


def test_nnclr_with_an_empty_support_set_is_in_batch_info_nce(rng):
    z1, z2 = normal(rng, 5, 4), normal(rng, 5, 4)
    empty = np.zeros((8, 4), "float32")
    expected = (value(losses.in_batch_info_nce(z1, z2, 0.1)) + value(losses.in_batch_info_nce(z2, z1, 0.1))) / 2
    assert value(losses.nnclr(z1, z2, empty, 0.1, support_mask=np.zeros(8, bool))) == pytest.approx(expected, rel=1e-5)


def test_nnclr_extremes():
    n = 6
    views = np.eye(n, dtype="float32")
    # The support set holds every image: each view's neighbour is itself, so this is identical views of
    # orthogonal images: the positive at 1 against N − 1 negatives at 0.
    assert value(losses.nnclr(views, views, views, 0.1)) == pytest.approx(np.log(1 + (n - 1) * np.exp(-10)), abs=1e-5)
    collapsed = np.ones((n, 4), "float32")
    assert value(losses.nnclr(collapsed, collapsed, collapsed, 0.1)) == pytest.approx(np.log(n), rel=1e-4)


# ---- HSIC Twins (Tsai et al. 2021): Barlow Twins with target 2I − 1 ----

def reference_hsic_twins(z1, z2, lam):
    def standardise(z):
        z = z.astype(np.float64)
        return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
    a, b = standardise(z1), standardise(z2)
    d, n = a.shape[1], len(a)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            total += (1 - c) ** 2 if i == j else lam * (-1 - c) ** 2
    return total


def test_hsic_twins_matches_reference(rng):
    z1, z2 = normal(rng, 16, 5), normal(rng, 16, 5)
    for lam in (0.005, 0.5):
        assert value(losses.hsic_twins(z1, z2, lam)) == pytest.approx(reference_hsic_twins(z1, z2, lam), rel=1e-4)


def test_hsic_twins_extremes():
    # Two dimensions that are exact opposites, identical in both views: C = 2I − 1, the target, so 0.
    a = np.array([[1.0], [-1.0], [2.0], [-2.0]], "float32")
    opposite = np.concatenate([a, -a], axis=1)
    assert value(losses.hsic_twins(opposite, opposite, 0.5)) == pytest.approx(0.0, abs=1e-4)
    # Barlow Twins' optimum (C = I) is not HSIC's: each of the d(d−1) off-diagonal zeros costs λ·1.
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], "float32")
    assert value(losses.hsic_twins(signs, signs, 0.5)) == pytest.approx(0.5 * 2, rel=1e-4)
    # Collapse: C = 0, so d on the diagonal and λ·d(d−1) off it.
    collapsed = np.ones((8, 5), "float32")
    assert value(losses.hsic_twins(collapsed, collapsed, 0.01)) == pytest.approx(5 + 0.01 * 20, rel=1e-4)


# ---- TWIST (Wang et al. 2021, eq. 4) ----

def reference_twist(l1, l2):
    def softmax(row):
        e = np.exp(row - row.max())
        return e / e.sum()

    def entropy(p):
        return -sum(x * np.log(x) for x in p if x > 0)

    p1 = [softmax(r.astype(np.float64)) for r in l1]
    p2 = [softmax(r.astype(np.float64)) for r in l2]
    n = len(p1)
    kl = lambda p, q: sum(p[k] * np.log(p[k] / q[k]) for k in range(len(p)))
    consistency = sum(kl(p1[i], p2[i]) + kl(p2[i], p1[i]) for i in range(n)) / (2 * n)
    sharpness = sum(entropy(p1[i]) + entropy(p2[i]) for i in range(n)) / (2 * n)
    diversity = (entropy(np.mean(p1, axis=0)) + entropy(np.mean(p2, axis=0))) / 2
    return consistency + sharpness - diversity


def test_twist_matches_reference(rng):
    l1, l2 = normal(rng, 7, 5), normal(rng, 7, 5)
    assert value(losses.twist(l1, l2)) == pytest.approx(reference_twist(l1, l2), rel=1e-4, abs=1e-6)


def test_twist_extremes():
    d = 6
    confident = 30.0 * np.eye(d, dtype="float32")          # one confident class per image, all classes used
    assert value(losses.twist(confident, confident)) == pytest.approx(-np.log(d), abs=1e-4)
    collapsed = np.tile(np.arange(d, dtype="float32"), (8, 1))  # every image the same distribution
    assert value(losses.twist(collapsed, collapsed)) == pytest.approx(0.0, abs=1e-5)
    # Confident but disagreeing views pay the symmetric KL: far above the agreeing optimum.
    assert value(losses.twist(confident, np.roll(confident, 1, axis=0))) > 10.0


# ---- DINO (Caron et al. 2021, eq. 1 and Algorithm 1) ----

def reference_dino(student, teacher, center, ts, tt):
    total = 0.0
    for s, t in zip(student.astype(np.float64), teacher.astype(np.float64)):
        target = np.exp((t - center) / tt - np.max((t - center) / tt))
        target /= target.sum()
        log_student = s / ts - np.max(s / ts) - np.log(np.sum(np.exp(s / ts - np.max(s / ts))))
        total += -sum(target[k] * log_student[k] for k in range(len(s)))
    return total / len(student)


def test_dino_matches_reference(rng):
    s, t, c = normal(rng, 6, 8), normal(rng, 6, 8), normal(rng, 8) * 0.1
    for ts, tt in ((0.1, 0.04), (0.5, 0.2)):
        assert value(losses.dino(s, t, c, ts, tt)) == pytest.approx(reference_dino(s, t, c, ts, tt), rel=1e-4)


def test_dino_extremes():
    k = 16
    # Collapse onto one dimension: without centring a student matching the teacher pays ≈ 0, the collapse
    # is invisible. Centring (centre = the teacher's mean, here its constant output) turns the target
    # uniform, and matching it costs log K: the collapse shows.
    one_dimension = np.zeros((4, k), "float32")
    one_dimension[:, 0] = 1.0
    assert value(losses.dino(one_dimension, one_dimension, np.zeros(k, "float32"), 0.01, 0.01)) == pytest.approx(0.0, abs=1e-6)
    uniform_student = np.zeros((4, k), "float32")
    assert value(losses.dino(uniform_student, one_dimension, one_dimension[0], 0.1, 0.04)) == pytest.approx(np.log(k), rel=1e-5)
    # Distinct, confident, agreeing outputs (centring leaves their differences): low loss.
    distinct = np.eye(k, dtype="float32")
    assert value(losses.dino(distinct, distinct, distinct.mean(0), 0.01, 0.01)) < 1e-3


# ---- BYOL (Grill et al. 2020, eq. 2) and SimSiam (Chen & He 2021, eq. 1) ----

def test_byol_and_negative_cosine_match_reference(rng):
    p, z = normal(rng, 6, 5), normal(rng, 6, 5)
    cosines = [cos(p[i], z[i]) for i in range(6)]
    byol = np.mean([np.sum((unit(p[i:i + 1]) - unit(z[i:i + 1])) ** 2) for i in range(6)])
    assert value(losses.byol(p, z)) == pytest.approx(byol, rel=1e-5)
    assert value(losses.byol(p, z)) == pytest.approx(np.mean([2 - 2 * c for c in cosines]), rel=1e-5)
    assert value(losses.negative_cosine(p, z)) == pytest.approx(-np.mean(cosines), rel=1e-5)


def test_byol_and_simsiam_extremes_and_what_they_cannot_see(rng):
    p = normal(rng, 8, 5)
    assert value(losses.byol(p, 3 * p)) == pytest.approx(0.0, abs=1e-6)      # same direction, any scale
    assert value(losses.byol(p, -p)) == pytest.approx(4.0, rel=1e-6)
    assert value(losses.negative_cosine(p, 3 * p)) == pytest.approx(-1.0, rel=1e-6)
    assert value(losses.negative_cosine(p, -p)) == pytest.approx(1.0, rel=1e-6)
    # Collapse reaches each loss's best value: the loss cannot see it. collapse_std (logged every step) can.
    collapsed = np.ones((64, 5), "float32")
    assert value(losses.byol(collapsed, collapsed)) == pytest.approx(0.0, abs=1e-6)
    assert value(losses.negative_cosine(collapsed, collapsed)) == pytest.approx(-1.0, rel=1e-6)
    assert value(losses.collapse_std(collapsed)) == pytest.approx(0.0, abs=1e-5)
    assert value(losses.collapse_std(normal(rng, 64, 5))) > 0.5


# ---- VICReg (Bardes et al. 2022, eqs. 1–6) ----

def reference_vicreg(z1, z2, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
    n, d = z1.shape
    invariance = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def variance(z):
        stds = [np.sqrt(sum((z[i, j] - z[:, j].mean()) ** 2 for i in range(n)) / (n - 1) + eps) for j in range(d)]
        return sum(max(0.0, 1 - s) for s in stds) / d

    def covariance(z):
        centred = z - z.mean(0)
        total = 0.0
        for a in range(d):
            for b in range(d):
                if a != b:
                    total += (sum(centred[i, a] * centred[i, b] for i in range(n)) / (n - 1)) ** 2
        return total / d

    return lam * invariance + mu * (variance(z1) + variance(z2)) / 2 + nu * (covariance(z1) + covariance(z2))


def test_vicreg_matches_reference(rng):
    z1, z2 = normal(rng, 10, 4) * 0.5, normal(rng, 10, 4) * 0.5    # std < 1: the variance hinge is active
    assert value(losses.vicreg(z1, z2)) == pytest.approx(reference_vicreg(z1, z2), rel=1e-4)
    assert value(losses.vicreg(z1, z2, 1.0, 2.0, 3.0)) == pytest.approx(reference_vicreg(z1, z2, 1.0, 2.0, 3.0), rel=1e-4)


def test_vicreg_extremes():
    # Identical views, every dimension with std ≥ 1 and uncorrelated: all three terms are 0.
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], "float32")
    assert value(losses.vicreg(signs, signs)) == pytest.approx(0.0, abs=1e-6)
    # Collapse: views agree (invariance 0), no covariance, but each dimension's std is √ε: μ·(1 − √ε).
    collapsed = np.ones((8, 5), "float32")
    assert value(losses.vicreg(collapsed, collapsed)) == pytest.approx(25.0 * (1 - np.sqrt(1e-4)), rel=1e-5)


def test_new_losses_are_finite_for_zero_vectors():
    zeros = np.zeros((4, 3), "float32")
    for loss in (losses.dcl(zeros, zeros, 0.1), losses.nnclr(zeros, zeros, zeros, 0.1), losses.hsic_twins(zeros, zeros),
                 losses.twist(zeros, zeros), losses.dino(zeros, zeros, np.zeros(3, "float32")), losses.byol(zeros, zeros),
                 losses.negative_cosine(zeros, zeros), losses.vicreg(zeros, zeros)):
        assert np.isfinite(value(loss))
