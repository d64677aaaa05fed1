"""Look inside a finished run: its embedding space, nearest neighbours, kNN errors, and predictions on new images.

A run folder holds ``encoder.keras`` (pixels 0–255 → features) and, for labelled data, ``classifier.keras``
(→ class probabilities). The run's dataset is rebuilt from ``config.json`` with the same split and seed, so
"test image #12" means the same picture the trainer evaluated on. Features are computed once per run and
kept in memory (a few MB for digits or CIFAR-10), because every click on the Explore page reuses them.
"""
from __future__ import annotations

import base64
import functools
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from sslcore import evaluate
from sslcore.data import decode_image
from sslcore.run import LoadedModel, Run, embed_with, load_run_data

# Caps that keep the page responsive on a laptop CPU: a bigger bank barely changes what neighbours look like.
MAX_BANK_IMAGES = 10_000
MAX_QUERY_IMAGES = 5_000
MAX_TSNE_POINTS = 1_500
CACHED_RUNS = 3


@dataclass
class RunEmbeddings:
    """A finished run's encoder features for its (capped) training pool, the bank, and its test split, the queries."""
    path: Path
    config: dict
    class_names: list[str]
    bank_images: np.ndarray
    bank_labels: np.ndarray | None
    bank_features: np.ndarray
    query_images: np.ndarray
    query_labels: np.ndarray | None
    query_features: np.ndarray
    encoder: Any
    memo: dict = field(default_factory=dict)   # t-SNE and kNN results, computed on first use
    stopped: str | None = None   # "stopped at step 40 of 100" when the encoder is a stopped run's

    def embed(self, images: np.ndarray) -> np.ndarray:
        return embed_with(self.encoder, images)

    def class_name(self, label) -> str:
        if label is None:
            return "unlabelled"
        return self.class_names[int(label)] if int(label) < len(self.class_names) else str(label)


_cache: "OrderedDict[tuple, RunEmbeddings]" = OrderedDict()
_cache_lock = threading.Lock()


def finished_run(path: str | os.PathLike) -> Run:
    """The finished run at ``path`` (ValueError, or RunNotFinished, saying what to do otherwise)."""
    return Run(path)


def load_run(path: str | os.PathLike, token: str | None = None, data: str | None = None) -> RunEmbeddings:
    """Encoder features of a finished run (or a Hub model) on the data it was trained on, from memory when this
    encoder embedded it before. With ``data`` (a source as ``sslcore.data.load`` takes it: ``digits``,
    ``upload:NAME``, ``hf:OWNER/NAME``), the encoder embeds that data instead, split as a run on it would be: how a
    pretrained encoder (``hf://timm/resnet18.a1_in1k``, which has no data of its own) or a run trained on other
    images sees these."""
    from sslcore import hub

    stopped = None
    if data is not None:
        key, location, config, load_encoder = _on_other_data(path, token, data)
    elif hub.is_hub_model(path):
        try:
            model = load_model(path, token)
        except hub.HubError as error:
            if error.kind != "not_sslcore":
                raise
            raise ValueError(f"{os.fspath(path)} is a pretrained encoder with no data of its own: pick the data to "
                             "embed with it (the Explore page's 'Data to embed')") from None
        key, location, config = (os.fspath(path),), Path(os.fspath(path)), _shared_data_config(path, model.config)
        load_encoder = lambda: model.encoder
    else:
        run = Run(path)
        key, location, config = (str(run.path.resolve()), *run.version), run.path, run.config
        load_encoder, stopped = lambda: run.encoder, run.dir.stopped_text()
    with _cache_lock:  # one embedding pass per run, even when two tabs ask at once
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        dataset = load_run_data(config)
        rng = np.random.default_rng(0)
        # The bank is the labelled pool when there is one (STL-10's unlabelled images carry no class to show).
        labelled = dataset.labelled_images is not None
        bank_images, bank_labels = _capped(dataset.labelled_images if labelled else dataset.train_images,
                                           dataset.labelled_labels if labelled else None, MAX_BANK_IMAGES, rng)
        has_test = dataset.test_images is not None
        query_images, query_labels = _capped(dataset.test_images if has_test else dataset.train_images,
                                             dataset.test_labels if has_test else dataset.train_labels, MAX_QUERY_IMAGES, rng)
        embeddings = RunEmbeddings(path=location, config=config, class_names=list(dataset.class_names),
                                   encoder=load_encoder(), stopped=stopped,
                                   bank_images=bank_images, bank_labels=bank_labels, bank_features=np.zeros(0),
                                   query_images=query_images, query_labels=query_labels, query_features=np.zeros(0))
        embeddings.bank_features = embeddings.embed(embeddings.bank_images)
        embeddings.query_features = embeddings.embed(embeddings.query_images)
        _cache[key] = embeddings
        while len(_cache) > CACHED_RUNS:
            _cache.popitem(last=False)
        return embeddings


def _shared_data_config(path, config: dict) -> dict:
    """A Hub model's own data, as far as this machine may read it: a built-in set, tfds in the usual place or a Hub
    dataset. A ``folder:`` in a downloaded config.json is a path on someone else's machine, or one chosen by whoever
    pushed the repo to read this server's disk: never read."""
    source = str(config.get("data", ""))
    kind, named, _ = source.partition(":")
    if named and kind not in ("hf", "tfds"):
        raise ValueError(f"{os.fspath(path)} was trained on its author's own images ({kind} "
                         f"{os.path.basename(source.rstrip('/'))!r}), which are not here: pick the data to embed "
                         "with it (the Explore page's 'Data to embed')")
    return {**config, "tfds_data_dir": None}


def _on_other_data(path: str | os.PathLike, token: str | None, data: str):
    """The cache key, location, settings and encoder loader for embedding ``data`` with the encoder at ``path``."""
    from sslcore import hub

    if hub.is_hub_model(path):
        encoder = pretrained_encoder(os.fspath(path), token)
        key, size, load_encoder = (encoder.source, encoder.revision), encoder.image_size, lambda: encoder.encoder
    else:
        run = Run(path)
        key, size, load_encoder = (str(run.path.resolve()), *run.version), int(run.config["image_size"]), lambda: run.encoder
    # The split and seed a run on this data would get (sslcore.run.data_arguments' defaults), so "test image #12"
    # is the same picture for every encoder explored on it.
    return (*key, data), Path(os.fspath(path)), {"data": data, "image_size": size}, load_encoder


def pretrained_encoder(source: str, token: str | None = None):
    """The encoder of a Hub repo (``USER/NAME`` or ``hf://USER/NAME``: a pushed run or a timm checkpoint) as
    ``sslcore.model_encoder`` loads it, kept in memory for the next caller (Explore, the audit, few-label labelling)."""
    return _pretrained(source if source.startswith("hf://") else f"hf://{source}", None if token == "" else token)


@functools.lru_cache(maxsize=2)
def _pretrained(source: str, token: str | None):
    # Building the network takes seconds; the weights are in the HF cache.
    from sslcore import model_encoder

    return model_encoder.load(source, token=token)


def _capped_indices(count: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(count)[:cap]) if count > cap else np.arange(count)


def _capped(images: np.ndarray, labels: np.ndarray | None, cap: int, rng: np.random.Generator):
    """At most ``cap`` images (a random subset, in dataset order) with their labels."""
    keep = _capped_indices(len(images), cap, rng)
    return images[keep], None if labels is None else labels[keep]


# ---------------------------------------------------------------------------------------------- views


def tsne_view(embeddings: RunEmbeddings, max_points: int = MAX_TSNE_POINTS, seed: int = 0) -> dict[str, Any]:
    """2-D t-SNE of (up to ``max_points``) test images: points, labels, test indices and hover thumbnails."""
    key = ("tsne", max_points, seed)
    count = len(embeddings.query_features)
    if count < 3:   # scikit-learn's own error ("perplexity must be less than n_samples") says nothing to a user
        raise ValueError(f"{count} test image(s) are too few for a t-SNE, which needs 3 or more: the test split is "
                         f"{float(embeddings.config.get('test_fraction', 0.2)):.0%} of the images, so use at least "
                         "15 images")
    if key not in embeddings.memo:
        chosen = _capped_indices(len(embeddings.query_features), max_points, np.random.default_rng(seed))
        points = evaluate.tsne(embeddings.query_features[chosen], seed=seed)
        labels = None if embeddings.query_labels is None else embeddings.query_labels[chosen]
        embeddings.memo[key] = {"points": points, "labels": labels, "indices": chosen,
                                "thumbnails": [thumbnail_uri(embeddings.query_images[i]) for i in chosen]}
    return embeddings.memo[key]


def knn_report(embeddings: RunEmbeddings) -> dict[str, Any]:
    """kNN top-1 accuracy of the test split against the training bank, and its confusion matrix."""
    if embeddings.bank_labels is None or embeddings.query_labels is None:
        raise ValueError("This run's data has no labels, so there is no kNN accuracy or confusion matrix to show")
    if "knn" not in embeddings.memo:
        num_classes = len(embeddings.class_names)
        config = embeddings.config
        scores = evaluate.knn_predict(embeddings.bank_features, embeddings.bank_labels, embeddings.query_features,
                                      num_classes, k=int(config.get("knn_k", 200)),
                                      temperature=float(config.get("knn_temperature", 0.1)))
        predicted = np.argmax(scores, axis=1)
        embeddings.memo["knn"] = {
            "accuracy": float(np.mean(predicted == embeddings.query_labels)),
            "matrix": evaluate.confusion_matrix(embeddings.query_labels, predicted, num_classes),
            "class_names": embeddings.class_names, "images": int(len(predicted)),
            "k": int(config.get("knn_k", 200))}
    return embeddings.memo["knn"]


def neighbors(embeddings: RunEmbeddings, *, index: int | None = None, image: np.ndarray | None = None,
              k: int = 8) -> dict[str, Any]:
    """The ``k`` training images most similar (cosine, encoder features) to a test image or to a new image."""
    if image is not None:
        query_image = np.asarray(image, dtype=np.uint8)
        features, label, source = embeddings.embed(query_image[None]), None, "uploaded image"
    else:
        count = len(embeddings.query_images)
        if index is None or not 0 <= int(index) < count:
            raise ValueError(f"Pick a test image index between 0 and {count - 1}; got {index}")
        index = int(index)
        query_image, features = embeddings.query_images[index], embeddings.query_features[index: index + 1]
        label = None if embeddings.query_labels is None else int(embeddings.query_labels[index])
        source = f"test image #{index}"
    found, similarities = evaluate.nearest_neighbors(embeddings.bank_features, features, int(k))
    rows = []
    for bank_index, similarity in zip(found[0], similarities[0]):
        bank_label = None if embeddings.bank_labels is None else int(embeddings.bank_labels[bank_index])
        rows.append({"index": int(bank_index), "similarity": float(similarity), "label": bank_label,
                     "class_name": embeddings.class_name(bank_label), "image": embeddings.bank_images[bank_index]})
    return {"query": {"image": query_image, "label": label, "class_name": embeddings.class_name(label) if label is not None
                      else "unknown", "source": source}, "neighbors": rows}


# ---------------------------------------------------------------------------------------------- classify


@functools.lru_cache(maxsize=CACHED_RUNS)
def _hub_model(source: str, token: str | None):
    """A Hub model, kept in memory (its download is in the Hugging Face cache anyway)."""
    from sslcore import hub

    return hub.load(source, token=token)


def load_model(source: str | os.PathLike, token: str | None = None) -> LoadedModel:
    """A finished run folder or a Hub model id (``hf://USER/NAME`` or ``USER/NAME``), ready to embed and classify."""
    from sslcore import hub

    source = os.fspath(source)
    if hub.is_hub_model(source):
        return _hub_model(source, token or None)
    return Run(source).model(source)


def classify_files(source: str | os.PathLike, files: Sequence[str | os.PathLike], top_k: int = 3,
                   names: Sequence[str] | None = None, token: str | None = None) -> list[dict[str, Any]]:
    """Top classes of each image file with a run's (or a Hub model's) classifier; a file that is not an image
    gets its own error. ``names`` are the names to report (an upload's original file name)."""
    model = load_model(source, token)
    if model.classifier is None:
        raise ValueError(f"{model.source} has no classifier: its data had no labels. Pick a run trained on labelled data")
    if not files:
        raise ValueError("No images given: upload one or more image files")
    names = list(names) if names else [os.path.basename(os.fspath(file)) for file in files]
    return model.classify_files(files, top_k, names=names)


def decode_upload(file: str | os.PathLike, image_size: int, name: str | None = None) -> np.ndarray:
    """An uploaded file as a uint8 image at the run's size (DataError naming the file when it is not an image)."""
    return decode_image(file, image_size, name=name or os.path.basename(os.fspath(file)))


def thumbnail_uri(image: np.ndarray, size: int = 32) -> str:
    """A small PNG as a data URI: small enough to ship one per t-SNE point for the hover preview."""
    pixels = np.asarray(image, dtype=np.uint8)
    gray = pixels.ndim == 3 and bool(np.all(pixels == pixels[..., :1]))
    picture = Image.fromarray(pixels[..., 0] if gray else pixels)  # one channel is a third of the bytes
    picture.thumbnail((size, size))  # only ever shrinks; the page scales small images up, pixelated
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
