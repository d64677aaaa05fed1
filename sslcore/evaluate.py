"""Evaluation of learnt features: kNN, linear probe, t-SNE, nearest neighbours, confusion matrix.

The protocol is the one the peers publish (``../shared/BENCHMARKS.md``), so figures line up:
kNN top-1 on L2-normalised encoder features, cosine similarity, k = 200, each neighbour voting with
weight exp(similarity / 0.1); linear probe = logistic regression on frozen, standardised features.
Neighbour search is scikit-learn's (brute force on normalised vectors, computed in blocks); the
weighted vote is a few lines of NumPy because scikit-learn has no exp(sim/τ) weighting.
"""
from __future__ import annotations

import numpy as np


def normalize_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def nearest_neighbors(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``bank`` and cosine similarities of each query's k most similar rows, most similar first."""
    from sklearn.neighbors import NearestNeighbors

    bank_unit, query_unit = normalize_rows(bank), normalize_rows(queries)
    k = min(k, len(bank_unit))
    # On unit vectors the Euclidean ranking equals the cosine ranking, and sklearn's euclidean path is blocked
    # and multithreaded; similarity = 1 - d²/2.
    search = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(bank_unit)
    distances, indices = search.kneighbors(query_unit)
    return indices, 1.0 - distances ** 2 / 2.0


def knn_predict(bank_features, bank_labels, query_features, num_classes: int, k: int = 200, temperature: float = 0.1):
    """Class scores (queries × classes) from a similarity-weighted vote of the k nearest bank images."""
    indices, similarities = nearest_neighbors(bank_features, query_features, k)
    weights = np.exp(similarities / temperature)
    votes = np.zeros((len(indices), num_classes), dtype=np.float64)
    neighbour_labels = np.asarray(bank_labels)[indices]
    np.add.at(votes, (np.repeat(np.arange(len(indices)), indices.shape[1]), neighbour_labels.ravel()), weights.ravel())
    return votes / votes.sum(axis=1, keepdims=True)


def knn_accuracy(bank_features, bank_labels, query_features, query_labels, k: int = 200, temperature: float = 0.1) -> float:
    num_classes = int(max(np.max(bank_labels), np.max(query_labels))) + 1
    scores = knn_predict(bank_features, bank_labels, query_features, num_classes, k, temperature)
    return float(np.mean(np.argmax(scores, axis=1) == np.asarray(query_labels)))


def fit_linear_probe(features, labels, max_iter: int = 1000):
    """Logistic regression on standardised frozen features (scikit-learn pipeline, reusable for prediction)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter)).fit(features, labels)


def linear_accuracy(train_features, train_labels, test_features, test_labels) -> float:
    probe = fit_linear_probe(train_features, train_labels)
    return float(np.mean(probe.predict(test_features) == np.asarray(test_labels)))


def tsne(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of L2-normalised features."""
    from sklearn.manifold import TSNE

    features = normalize_rows(features)
    perplexity = min(perplexity, max(2.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def confusion_matrix(true_labels, predicted_labels, num_classes: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix as sklearn_confusion

    return sklearn_confusion(true_labels, predicted_labels, labels=list(range(num_classes)))
