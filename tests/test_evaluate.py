"""kNN (the benchmark protocol), linear probe, t-SNE, confusion matrix."""
import numpy as np
import pytest

from sslcore import evaluate


def brute_force_knn(bank, bank_labels, queries, k, temperature, num_classes):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    predictions = []
    for query in queries:
        similarity = bank @ query
        top = np.argsort(-similarity)[:k]
        votes = np.zeros(num_classes)
        for index in top:
            votes[bank_labels[index]] += np.exp(similarity[index] / temperature)
        predictions.append(np.argmax(votes))
    return np.array(predictions)


def test_knn_matches_a_brute_force_weighted_vote():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
    bank_labels = rng.integers(0, 4, 300)
    scores = evaluate.knn_predict(bank, bank_labels, queries, 4, k=20, temperature=0.1)
    np.testing.assert_array_equal(np.argmax(scores, axis=1), brute_force_knn(bank, bank_labels, queries, 20, 0.1, 4))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)


def test_knn_and_linear_accuracy_on_separable_clusters():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 5
    labels = rng.integers(0, 3, 400)
    features = centres[labels] + rng.normal(size=(400, 16))
    assert evaluate.knn_accuracy(features[:300], labels[:300], features[300:], labels[300:], k=200) > 0.95
    assert evaluate.linear_accuracy(features[:300], labels[:300], features[300:], labels[300:]) > 0.95
    random_labels = rng.integers(0, 3, 400)
    assert evaluate.knn_accuracy(features[:300], random_labels[:300], features[300:], random_labels[300:]) < 0.6


def test_nearest_neighbors_are_sorted_by_cosine_similarity():
    bank = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype="float32")
    indices, similarity = evaluate.nearest_neighbors(bank, np.array([[1, 0.1]], "float32"), k=3)
    assert list(indices[0]) == [0, 2, 1]
    assert similarity[0][0] == pytest.approx(1 / np.sqrt(1.01), abs=1e-5)


def test_tsne_and_confusion_matrix_shapes():
    rng = np.random.default_rng(2)
    points = evaluate.tsne(rng.normal(size=(40, 8)))
    assert points.shape == (40, 2) and np.isfinite(points).all()
    matrix = evaluate.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 2], 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
