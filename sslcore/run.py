"""A finished (or stopped) run, opened once: its settings, the exact data its trainer used, its encoder and classifier.

Everything that reads a finished run (Explore, fine-tune, push, ``eval``, audit, labelling, export, ``classify``)
goes through :class:`Run`, so there is one loader of a run's data (the trainer's own arguments: split, seed,
``skip_bad_images``, ``tfds_data_dir``), one way to embed images, one evaluation protocol and one "not finished"
error. A run stopped before its end (Stop, ``--max-seconds``, ``--max-steps``) exported the models of its last
checkpoint and opens too; :attr:`Run.stopped` says where it stopped. :class:`LoadedModel` is the same for a model pulled from the Hub, which has no data beside it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sslcore.data import Dataset, load
from sslcore.runs import RunDir

EMBED_BATCH = 256
_RECORDED = ("class_names", "num_classes", "sslcore_version")   # what a pushed config.json adds to the settings


class RunNotFinished(ValueError):
    """The run has no trained encoder yet: still training, stopped before it exported one, or failed."""


def data_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``sslcore.data.load`` that rebuild a run's data exactly as its trainer loaded it."""
    return dict(test_fraction=float(config.get("test_fraction", 0.2)), seed=int(config.get("seed", 0)),
                skip_bad_images=bool(config.get("skip_bad_images", False)), tfds_data_dir=config.get("tfds_data_dir"))


def load_run_data(config: dict[str, Any], **extra) -> Dataset:
    """The data of a run's settings (a config.json dict, or ``TrainConfig.to_dict()``), split as the trainer split it."""
    return load(config["data"], int(config["image_size"]), **data_arguments(config), **extra)


@functools.lru_cache(maxsize=4)
def _cached_data(source: str, image_size: int, arguments: tuple) -> Dataset:
    return load(source, image_size, **dict(arguments))


@functools.lru_cache(maxsize=8)
def _cached_model(path: str, mtime_ns: int):
    import keras

    return keras.saving.load_model(path, compile=False)


def load_model_file(path: Path):
    """A ``.keras`` file, kept in memory until it is rewritten (the app embeds with the same run again and again)."""
    # Not resolved: a Hub snapshot's file is a symlink to a blob without the .keras name Keras needs.
    return _cached_model(os.path.abspath(path), Path(path).stat().st_mtime_ns)


def embed_with(model, images: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
    """float32 outputs of a Keras model on uint8 (or 0–255 float) images (N, S, S, 3)."""
    return np.asarray(model.predict(np.asarray(images, dtype="float32"), batch_size=batch_size, verbose=0),
                      dtype="float32")


class Run:
    """A run folder with a trained encoder: finished, or stopped with its last checkpoint's models exported.

    ``Run(path)`` raises ValueError when it is not a run, RunNotFinished when it has no encoder to load."""

    def __init__(self, path: str | os.PathLike | RunDir):
        self.dir = path if isinstance(path, RunDir) else RunDir(path)
        if not self.dir.exists():
            raise ValueError(f"{self.dir.path} is not a run folder (no config.json): give the --out folder of "
                             "`sslcore train`, or pick a run from the list")
        if not self.dir.encoder_path.exists():
            raise RunNotFinished(f"Run {self.dir.name} has not finished, so it has no trained encoder yet (and no "
                                 f"classifier): resume it (python -m sslcore train --resume --out {self.dir.path}) "
                                 "or pick a finished or stopped run")

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def name(self) -> str:
        return self.dir.name

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        return self.dir.config()

    @property
    def stopped(self) -> dict | None:
        """Where the run stopped ({"step", "total_steps", "epoch", "epochs"}) when its models are a stopped run's;
        None when they are a finished run's."""
        return self.dir.stopped_at()

    @property
    def state_text(self) -> str:
        """"finished", or "stopped at step 40 of 100": what a page or a model card says about these models."""
        return self.dir.stopped_text() or "finished"

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    def dataset(self) -> Dataset:
        """The run's data, split exactly as the trainer split it (kept in memory for the next caller)."""
        arguments = data_arguments(self.config)
        return _cached_data(self.config["data"], self.image_size, tuple(sorted(arguments.items())))

    @property
    def encoder(self):
        return load_model_file(self.dir.encoder_path)

    @property
    def classifier(self):
        return load_model_file(self.dir.classifier_path) if self.dir.classifier_path.exists() else None

    @property
    def version(self) -> tuple:
        """Changes when the run's models are rewritten (a resumed run that finished again)."""
        return tuple(p.stat().st_mtime_ns for p in (self.dir.encoder_path, self.dir.classifier_path) if p.exists())

    def embed(self, images: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
        return embed_with(self.encoder, images, batch_size)

    def evaluate(self, data: Dataset | None = None, *, k: int | None = None) -> dict[str, Any]:
        """kNN and linear accuracy of the encoder on the run's held-out split (its labelled pool as the bank)."""
        data = data or self.dataset()
        if data.test_images is None or data.labelled_images is None:
            raise ValueError(f"{self.config['data']} has no labels, so there is no held-out accuracy to measure: "
                             "give labelled images")
        return self.evaluate_on(data.labelled_images, data.labelled_labels, data.test_images, data.test_labels, k=k)

    def evaluate_on(self, bank_images, bank_labels, test_images, test_labels, *, k: int | None = None) -> dict[str, Any]:
        """The peers' protocol on any labelled images: kNN with the run's k and temperature (cosine, weighted votes)
        and logistic regression on standardised features; the test features come back for plots."""
        from sslcore import evaluate as protocol

        bank, test = self.embed(bank_images), self.embed(test_images)
        k = int(k if k is not None else self.config.get("knn_k", 200))
        temperature = float(self.config.get("knn_temperature", 0.1))
        return {"knn_accuracy": protocol.knn_accuracy(bank, bank_labels, test, test_labels, k=k, temperature=temperature),
                "linear_accuracy": protocol.linear_accuracy(bank, bank_labels, test, test_labels),
                "knn_k": k, "knn_temperature": temperature, "train_images": int(len(bank)),
                "test_images": int(len(test)), "test_features": test, "test_labels": test_labels}

    def model(self, label: str | None = None) -> "LoadedModel":
        """Encoder and classifier with the class names, ready to classify image files."""
        classifier = self.classifier
        names = self.config.get("class_names")
        if names is None and classifier is not None:
            names = _class_names_from_data(self, int(classifier.output_shape[-1]), label or str(self.path))
        return LoadedModel(encoder=self.encoder, classifier=classifier, class_names=list(names or []),
                           image_size=self.image_size, source=label or str(self.path),
                           config={k: v for k, v in self.config.items() if k not in _RECORDED})


def _class_names_from_data(run: Run, count: int, label: str) -> list[str]:
    """A local run folder does not record class names: they are its data's."""
    import warnings

    try:
        return list(run.dataset().class_names)
    except Exception as error:  # noqa: BLE001 - the data may be gone; classes are then shown by index
        warnings.warn(f"{label}: class names unknown ({run.config.get('data')} cannot be loaded: {error}); "
                      "classes are shown by index")
        return [str(i) for i in range(count)]


@dataclass
class LoadedModel:
    """A run's (or a pushed model's) encoder and classifier with what it takes to use them on image files."""
    encoder: Any
    classifier: Any | None
    class_names: list[str]
    image_size: int
    config: dict
    source: str

    def embed(self, images: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
        """Features for uint8 (or 0–255 float) images of shape (N, S, S, 3)."""
        return embed_with(self.encoder, images, batch_size)

    def predict(self, images: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
        """Class probabilities (N, classes)."""
        if self.classifier is None:
            raise ValueError(f"{self.source} has no classifier (its data had no labels): use embed() for features")
        return embed_with(self.classifier, images, batch_size).astype("float64")

    def classify_files(self, files: Sequence[str | os.PathLike], top_k: int = 3,
                       names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Top classes of each image file; a file that is not an image gets its own error instead."""
        from sslcore.data import DataError, decode_image

        if self.classifier is None:
            raise ValueError(f"{self.source} has no classifier (its data had no labels), so it cannot classify")
        results, decoded = [], []
        for position, file in enumerate(files):
            name = names[position] if names else os.fspath(file)
            try:
                decoded.append((len(results), decode_image(file, self.image_size, name=name)))
                results.append({"file": name, "predictions": [], "error": None})
            except DataError as error:
                results.append({"file": name, "predictions": [], "error": str(error)})
        if decoded:
            probabilities = self.predict(np.stack([image for _, image in decoded]))
            for (position, image), scores in zip(decoded, probabilities):
                top = np.argsort(scores)[::-1][: max(1, int(top_k))]
                results[position]["predictions"] = [
                    {"class": self.class_names[i] if i < len(self.class_names) else str(i),
                     "probability": float(scores[i])} for i in top]
                results[position]["image"] = image  # the decoded picture, as the model saw it
        return results
