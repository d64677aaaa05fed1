"""Few-label classification: a handful of labelled examples per class give every other image a class.

Self-supervised embeddings put images of the same kind near each other, so a few labelled examples are enough
to name the neighbourhoods: each image gets the class of its most similar examples (kNN on the run's
embeddings, ``sslcore.evaluate.knn_predict``: cosine similarity, each of the ``k`` nearest examples voting with
weight exp(similarity / temperature)) with the winning class's share of the vote as its confidence. A
logistic-regression probe (``method="probe"``, ``sslcore.evaluate.fit_linear_probe``) is the alternative; with
1–10 examples per class the two are close (docs/audit.md has CIFAR-10 figures), and kNN needs no fitting.

Images and examples come as arrays, as files, or as folders (examples: one subfolder per class), so the CLI,
the app's upload boxes and a notebook all call the same ``label_images``.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from sslcore import evaluate
from sslcore.data import DataError, decode_image, load_folder
from sslcore.export import check_outside, embed, folder_path, load_encoder, run_image_size

METHODS = ("knn", "probe")
# With a few examples per class every example is a neighbour; k only matters once there are many.
DEFAULT_K = 20
TEMPERATURE = 0.1  # the kNN evaluation's (sslcore.evaluate), so confidences read the same everywhere


@dataclass(repr=False, eq=False)
class LabelResult:
    labels: list[str]                  # predicted class per image
    confidences: np.ndarray            # probability of that class, per image
    scores: np.ndarray                 # (images, classes) class probabilities
    class_names: list[str]
    paths: list[str]                   # per image: relative path, file name, or "#index" for arrays
    images: np.ndarray | None = None   # the decoded images (uint8), for galleries
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (name, reason) of undecodable images
    examples: int = 0

    def rows(self) -> list[dict[str, Any]]:
        return [{"path": path, "label": label, "confidence": float(confidence)}
                for path, label, confidence in zip(self.paths, self.labels, self.confidences)]

    def counts(self) -> dict[str, int]:
        return {name: int(sum(label == name for label in self.labels)) for name in self.class_names}

    def __repr__(self) -> str:
        return f"LabelResult({len(self.labels)} images, classes={self.class_names}, examples={self.examples})"


def label_images(run, images, *, examples, example_labels: Sequence | None = None, method: str = "knn",
                 k: int = DEFAULT_K, flip_average: bool = True) -> LabelResult:
    """Classify ``images`` from a few labelled ``examples`` with the run's embeddings.

    ``images``: a uint8 array (N, H, W, 3), a folder (``folder:PATH`` or a path; flat or with subfolders, which
    are ignored as labels), or a list of image files / PIL images / arrays.
    ``examples``: a class-per-subfolder folder; or a mapping class name → images (files, PIL images, arrays);
    or images as for ``images`` together with ``example_labels``, one class name per example.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown labelling method {method!r}; choose one of {', '.join(METHODS)}")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    encoder = load_encoder(run)
    size = run_image_size(run)
    example_images, example_classes, class_names = _examples(examples, example_labels, size)
    pixels, paths, skipped = _images(images, size)
    if len(pixels) == 0:
        raise ValueError("No images to label" + (f": none could be decoded ({skipped[0][1]})" if skipped else ""))
    bank = embed(encoder, example_images, flip_average=flip_average)
    queries = embed(encoder, pixels, flip_average=flip_average)
    if method == "knn":
        scores = evaluate.knn_predict(bank, example_classes, queries, len(class_names), k=k, temperature=TEMPERATURE)
    else:
        probe = evaluate.fit_linear_probe(bank, example_classes)
        scores = np.zeros((len(queries), len(class_names)))
        scores[:, probe.classes_] = probe.predict_proba(queries)
    predicted = np.argmax(scores, axis=1)
    return LabelResult(labels=[class_names[i] for i in predicted], confidences=scores[np.arange(len(scores)), predicted],
                       scores=scores, class_names=class_names, paths=paths, images=pixels, skipped=skipped,
                       examples=len(example_images))


def label_folder(run, data, examples, out=None, **options) -> LabelResult:
    """``label_images`` on a folder; writes ``path,label,confidence`` to ``out`` (a CSV file) when given."""
    root = folder_path(data)
    if out is not None:
        check_outside(root, out, what="the labels")
    result = label_images(run, root, examples=examples, **options)
    if out is not None:
        write_labels_csv(out, result)
    return result


def write_labels_csv(path, result: LabelResult) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "confidence"])
        writer.writerows((row["path"], row["label"], f"{row['confidence']:.4f}") for row in result.rows())
    return path


def examples_by_file_name(files: Sequence, names: Sequence[str] | None = None) -> dict[str, list]:
    """{class: files} from files named ``CLASS_anything.ext`` (the class is the name up to the first underscore):
    how the app takes a few dropped example images per class."""
    by_class: dict[str, list] = {}
    for position, file in enumerate(files):
        name = names[position] if names else os.path.basename(os.fspath(file))
        stem = os.path.splitext(name)[0]
        if "_" not in stem or not stem.split("_", 1)[0]:
            raise ValueError(f"Example {name!r} does not say its class: name example files CLASS_anything.png "
                             "(e.g. cat_1.jpg), or give a folder with one subfolder per class")
        by_class.setdefault(stem.split("_", 1)[0], []).append(file)
    return by_class


# ---------------------------------------------------------------------------------------------- inputs


def _examples(examples, example_labels, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images, class index per image, class names) from any of the forms ``label_images`` takes."""
    if isinstance(examples, (str, os.PathLike)) and example_labels is None:
        folder = load_folder(folder_path(examples), size, skip_bad_images=True)
        if folder.labels is None:
            raise ValueError(f"The examples folder {examples} has no class subfolders: put each class's examples "
                             "in a subfolder named after the class")
        return folder.images, folder.labels, list(folder.class_names)
    if isinstance(examples, Mapping):
        names, images = [], []
        for name, items in examples.items():
            decoded, _, skipped = _images(list(items), size)
            if skipped:
                raise DataError(f"Example of class {name!r} could not be decoded: {skipped[0][0]}: {skipped[0][1]}")
            images.append(decoded)
            names += [str(name)] * len(decoded)
        example_labels, pixels = names, np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8)
    else:
        if example_labels is None:
            raise ValueError("Give the examples' classes: example_labels, a {class: images} mapping, or a folder "
                             "with one subfolder per class")
        pixels, _, skipped = _images(examples, size)
        if skipped:
            raise DataError(f"Example {skipped[0][0]} could not be decoded: {skipped[0][1]}")
    example_labels = [str(label) for label in example_labels]
    if len(example_labels) != len(pixels):
        raise ValueError(f"{len(pixels)} examples but {len(example_labels)} example labels: give one class per example")
    class_names = sorted(set(example_labels))
    if len(class_names) < 2:
        raise ValueError(f"Few-label classification needs examples of at least 2 classes; got {class_names or 'none'}")
    index = {name: i for i, name in enumerate(class_names)}
    return pixels, np.array([index[label] for label in example_labels], np.int32), class_names


def _images(images, size: int) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """(uint8 (N, size, size, 3), a name per image, skipped (name, reason)) from an array, a folder or a list."""
    if isinstance(images, (str, os.PathLike)):
        root = folder_path(images)
        folder = load_folder(root, size, skip_bad_images=True)
        return folder.images, list(folder.paths), list(folder.skipped)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        names = [f"#{i}" for i in range(len(images))]
        if images.shape[1:] == (size, size, 3):
            return images.astype(np.uint8, copy=False), names, []
        return np.stack([decode_image(Image.fromarray(np.asarray(image, np.uint8)), size) for image in images]), names, []
    decoded, names, skipped = [], [], []
    for position, item in enumerate(images):
        name = _name(item, position)
        try:
            if isinstance(item, np.ndarray):
                item = Image.fromarray(np.asarray(item, np.uint8))
            decoded.append(decode_image(item, size, name=name))
            names.append(name)
        except DataError as error:
            skipped.append((name, getattr(error, "reason", str(error))))
    pixels = np.stack(decoded) if decoded else np.zeros((0, size, size, 3), np.uint8)
    return pixels, names, skipped


def _name(item, position: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.path.basename(os.fspath(item))
    return f"#{position}"
