"""What a pushed model repository holds, written into a staging folder for ``sslcore.hub.push`` to upload.

    encoder.keras        feature extractor: RGB pixels 0–255 → features (Keras 3 format, loads with plain Keras)
    classifier.keras     encoder + linear head + softmax → class probabilities (runs on labelled data only)
    config.json          the run's training config (local folders by name, not path) plus ``class_names`` and
                         ``sslcore_version``
    metrics.jsonl        one row per epoch
    training_curves.png, tsne.png    when plotly can write PNG files (it needs the ``kaleido`` package)

The model card (``sslcore.model_card``) quotes kNN and linear accuracy measured here with the published protocol
(weighted cosine kNN with the run's k and temperature, 200 and 0.1 by default; logistic regression on standardised
features) on the run's held-out split, so a reader can compare the figure with papers. Nothing here touches the
network.
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sslcore.hub import HubError
from sslcore.run import Run
from sslcore.runs import write_json_atomic

PUSHED_FILES = ("encoder.keras", "classifier.keras", "metrics.jsonl")
# A sample keeps t-SNE to seconds on the pushing machine's CPU; a thousand points already show the clusters.
MAX_TSNE_POINTS = 1000


@dataclass
class Staged:
    """The staged files (upload order: models first, so the card never describes weights that are not there yet)."""
    files: list[str]
    notes: list[str]
    evaluation: dict | None
    class_names: list[str]


def stage(run: Run, folder: Path, *, evaluate: bool, version: str,
          progress: Callable[[str], None] = lambda message: None) -> Staged:
    """Copy and write everything the repository gets, except the card, into ``folder``."""
    progress("measuring kNN and linear accuracy" if evaluate else "reading the run")
    evaluation, class_names, features = measure(run, evaluate)
    files, notes = _copy_files(run, class_names, folder, version)
    images, image_notes = _write_images(run, class_names, features, folder, progress)
    return Staged(files=files + images, notes=notes + image_notes, evaluation=evaluation, class_names=class_names)


def measure(run: Run, evaluate: bool) -> tuple[dict | None, list[str], dict | None]:
    """(figures for the card, class names, held-out features for the t-SNE image).

    Without ``evaluate``, or without the data, the card reports the trainer's last kNN figure and says so.
    """
    config = run.config
    try:
        data = run.dataset()
    except Exception as error:  # noqa: BLE001 - the data may be gone; say so, or push without measuring
        if evaluate:
            raise HubError(f"push measures kNN and linear accuracy on the run's data and reads its class names, but "
                           f"{config.get('data')} cannot be loaded here ({error}). Make the data available, or push "
                           "with --no-eval to report the training-time kNN figure instead.", kind="no_data") from None
        data = None
    class_names = list(data.class_names) if data is not None else _recorded_class_names(run)
    if not evaluate or data is None or data.test_images is None or data.labelled_images is None:
        last = next((row for row in reversed(run.dir.epochs()) if row.get("knn_accuracy") is not None), None)
        if last is None:
            return None, class_names, None
        evaluation = {"knn_accuracy": last["knn_accuracy"], "linear_accuracy": None,
                      "knn_k": config.get("knn_k", 200), "knn_temperature": config.get("knn_temperature", 0.1),
                      "test_images": None, "train_images": None,
                      "measured": f"The kNN figure is the trainer's, from the end of epoch {last['epoch']} (bank and "
                                  "test split capped at the config's knn_bank_size / eval_size); the linear probe was "
                                  "not measured (pushed without evaluation)."}
        return evaluation, class_names, None
    evaluation = run.evaluate(data)
    features = {"features": evaluation.pop("test_features"), "labels": evaluation.pop("test_labels")}
    return {**evaluation, "measured": "Measured when the model was pushed."}, class_names, features


def _recorded_class_names(run: Run) -> list[str]:
    """Without the data: the names the trainer wrote into config.json, else the classifier's outputs by index (a run
    from before config.json held them)."""
    if run.config.get("class_names") is not None:
        return [str(name) for name in run.config["class_names"]]
    classifier = run.classifier
    return [str(i) for i in range(int(classifier.output_shape[-1]) if classifier is not None else 0)]


def _copy_files(run: Run, class_names: list[str], folder: Path, version: str) -> tuple[list[str], list[str]]:
    files, notes = [], []
    for name in PUSHED_FILES:
        source = run.path / name
        if source.exists():
            shutil.copy2(source, folder / name)
            files.append(name)
    if "classifier.keras" not in files:
        notes.append("No classifier.keras: the run's data had no labels, so only the encoder is shared.")
    write_json_atomic(folder / "config.json", {**shared_config(run.config), "class_names": class_names,
                                               "num_classes": len(class_names), "sslcore_version": version})
    files.insert(2 if "classifier.keras" in files else 1, "config.json")
    return files, notes


def shared_config(config: dict) -> dict:
    """A run's settings as a public repo shows them: folders by their name, not their path on this machine (a
    home directory, or a Space visitor's upload folder), as the model card already names them."""
    def local(value):
        return Path(value).name if value and not str(value).startswith("hf:") else value

    shared = dict(config)
    kind, _, path = str(config.get("data", "")).partition(":")
    if kind == "folder":
        shared["data"] = "folder:" + Path(path).name
    if config.get("init"):
        shared["init"] = local(config["init"])
    if config.get("tfds_data_dir"):
        shared["tfds_data_dir"] = local(config["tfds_data_dir"])
    if isinstance(config.get("init_source"), dict):
        shared["init_source"] = {**shared_config(config["init_source"]), "source": local(config["init_source"].get("source"))}
    return shared


def _write_images(run: Run, class_names: list[str], features: dict | None, folder: Path,
                  progress: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Training curves and t-SNE as PNG through sslcore.plots, when plotly can write PNGs; else a note saying why."""
    try:
        from sslcore import plots
    except ImportError:
        return [], ["No training-curve or t-SNE images: sslcore.plots is not available."]
    if importlib.util.find_spec("kaleido") is None:
        return [], ["No training-curve or t-SNE images: plotly needs the `kaleido` package to write PNG files "
                    "(pip install kaleido). The per-epoch figures are in metrics.jsonl."]
    written, notes = [], []
    progress("drawing the training curves and t-SNE")
    try:
        figure = plots.training_figure([(run.name, run.dir.steps(), run.dir.epochs())])
        figure.write_image(folder / "training_curves.png", width=1000, height=560)
        written.append("training_curves.png")
    except Exception as error:  # noqa: BLE001 - an image is never worth failing a push
        notes.append(f"No training-curve image: writing the PNG failed ({type(error).__name__}: {error}).")
    if features is not None:
        try:
            from sslcore import evaluate as protocol

            chosen = np.random.default_rng(0).permutation(len(features["features"]))[:MAX_TSNE_POINTS]
            points = protocol.tsne(features["features"][chosen])
            figure = plots.tsne_figure(points, features["labels"][chosen], class_names)
            figure.write_image(folder / "tsne.png", width=800, height=700)
            written.append("tsne.png")
        except Exception as error:  # noqa: BLE001
            notes.append(f"No t-SNE image: writing the PNG failed ({type(error).__name__}: {error}).")
    return written, notes
