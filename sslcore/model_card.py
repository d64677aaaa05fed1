"""The model card (``README.md``) of a run pushed to the Hugging Face Hub.

The YAML metadata is what the Hub indexes: ``library_name: keras`` (so the Hub shows the Keras badge and snippet),
tags (``self-supervised`` and the method), the dataset, the pipeline tag, and a ``model-index`` with the two figures
self-supervised papers report for frozen features -- kNN accuracy and linear-probe accuracy -- so they appear in the
Hub's evaluation widget. The text says what the model is, how each figure was measured, the whole training config,
and how to load and use it in three lines.

Built with huggingface_hub's ``ModelCardData`` / ``EvalResult`` (``model_name`` is what turns ``eval_results`` into
a ``model-index`` block) and ``ModelCard``; nothing here talks to the network.
"""
from __future__ import annotations

import json
import re
from pathlib import PurePath
from typing import Any, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from sslcore.runs import describe_stop

# Hub dataset ids for the sources sslcore knows; other sources keep their short name.
HUB_DATASETS = {"tfds:cifar10": "uoft-cs/cifar10"}
DATASET_NAMES = {"digits": "scikit-learn handwritten digits (8×8, upscaled)", "tfds:cifar10": "CIFAR-10",
                 "tfds:stl10": "STL-10"}


def dataset_identity(source: str) -> tuple[str | None, str]:
    """(id for the ``datasets`` metadata, readable name) of a run's data source.

    A local folder gets no id: its path says nothing to a reader and may name a private directory.
    """
    kind, _, argument = source.partition(":")
    if kind == "folder":
        return None, "a custom image folder"
    if kind == "hf":   # hf:OWNER/NAME[@REVISION][:CONFIG]: the card links the dataset's repo
        repo = re.split(r"[@:]", argument, maxsplit=1)[0]
        return repo, repo
    if source in HUB_DATASETS:
        return HUB_DATASETS[source], DATASET_NAMES[source]
    return (argument or source), DATASET_NAMES.get(source, argument or source)


def card_data(*, repo_id: str, config: dict[str, Any], evaluation: dict[str, Any] | None,
              has_classifier: bool, license: str | None = None) -> ModelCardData:
    """The YAML metadata: library, tags, dataset, pipeline and the model-index of kNN and linear accuracy."""
    dataset_id, dataset_name = dataset_identity(str(config.get("data", "")))
    method, encoder = str(config.get("method", "unknown")), str(config.get("encoder", "unknown"))
    results = []
    if evaluation and evaluation.get("knn_accuracy") is not None:
        common = dict(task_type="image-classification", task_name="Image classification on frozen features",
                      dataset_type=dataset_id or "custom", dataset_name=dataset_name, dataset_split="test",
                      metric_type="accuracy")
        k, temperature = int(evaluation["knn_k"]), float(evaluation["knn_temperature"])
        results.append(EvalResult(**common, metric_value=round(float(evaluation["knn_accuracy"]), 4),
                                  metric_name=f"kNN accuracy (k={k}, τ={temperature:g}, cosine)", metric_config="knn",
                                  metric_args={"k": k, "temperature": temperature, "similarity": "cosine"}))
        if evaluation.get("linear_accuracy") is not None:
            results.append(EvalResult(**common, metric_value=round(float(evaluation["linear_accuracy"]), 4),
                                      metric_name="Linear probe accuracy (logistic regression, standardised features)",
                                      metric_config="linear",
                                      metric_args={"classifier": "logistic_regression", "features": "standardised"}))
    return ModelCardData(
        library_name="keras",
        license=license,
        tags=["self-supervised", "sslcore", method, encoder, "keras", "image-feature-extraction"],
        datasets=[dataset_id] if dataset_id else None,
        pipeline_tag="image-classification" if has_classifier else "image-feature-extraction",
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        base_model=_hub_base_model(config.get("init_source")),
    )


def _hub_base_model(init_source: dict | None) -> str | None:
    """The Hub's ``base_model`` (what the Hub links as "fine-tuned from") when the encoder started from a pushed one."""
    source = str((init_source or {}).get("source", ""))
    return source[len("hf://"):].partition("@")[0] if source.startswith("hf://") else None


def init_paragraph(init_source: dict) -> str:
    """What the encoder started from: continued pretraining is only as good as its start, so the card names it."""
    source, revision = str(init_source.get("source", "?")), init_source.get("revision")
    if source.startswith("hf://"):
        where = f"`{source}`" + (f" (commit `{revision}`)" if revision else "")
    else:   # a local path says nothing to a reader and may name a private directory: its run's name only
        path = PurePath(source)
        where = f"a local run, `{path.parent.name if path.suffix == '.keras' else path.name}`"
    trained = ""
    if init_source.get("method"):
        data = dataset_identity(str(init_source.get("data", "")))[1] if init_source.get("data") else "its own data"
        trained = f", an encoder pretrained with {init_source['method']} on {data}"
    elif init_source.get("timm_architecture"):
        tag = f" (`{init_source['timm_tag']}`)" if init_source.get("timm_tag") else ""
        trained = f", timm's pretrained `{init_source['timm_architecture']}`{tag}"
    return (f"**Initialised from** {where}{trained}: this run's encoder started from its weights and continued "
            "self-supervised pretraining; the projection head and the classification head started fresh.")


def build_model_card(*, repo_id: str, config: dict[str, Any], class_names: Sequence[str],
                     evaluation: dict[str, Any] | None, files: Sequence[str], notes: Sequence[str] = (),
                     sslcore_version: str = "", license: str | None = None, stopped: dict | None = None) -> ModelCard:
    """``stopped``: where a run stopped before its end (``Run.stopped``), which the card then says up front."""
    has_classifier = "classifier.keras" in files
    data = card_data(repo_id=repo_id, config=config, evaluation=evaluation, has_classifier=has_classifier,
                     license=license)
    body = _body(repo_id, config, list(class_names), evaluation, list(files), list(notes), sslcore_version, has_classifier)
    if config.get("init_source"):
        body = body.replace("\n\n", "\n\n" + init_paragraph(config["init_source"]) + "\n\n", 1)
    if stopped:
        body = body.replace("\n\n", "\n\n" + _stopped_paragraph(stopped, config) + "\n\n", 1)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _stopped_paragraph(stopped: dict, config: dict[str, Any]) -> str:
    """A stopped run's models are its last checkpoint's: the reader must know they are not the planned run's end."""
    epochs = stopped.get("epochs") or config.get("epochs")
    done = f", {stopped['epoch']} of {epochs} epochs complete" if stopped.get("epoch") is not None and epochs else ""
    return (f"**Stopped early:** training was {describe_stop(stopped)}{done}, before its learning-rate schedule ended. "
            "These are the models of its last checkpoint, not of the finished run.")


def _body(repo_id, config, class_names, evaluation, files, notes, version, has_classifier) -> str:
    method, encoder = config.get("method", "?"), config.get("encoder", "?")
    size = int(config.get("image_size", 0))
    _, dataset_name = dataset_identity(str(config.get("data", "")))
    name = repo_id.split("/")[-1]
    parts = [f"# {name}", "",
             f"A **{encoder}** image encoder pretrained with **{method}** self-supervised learning on {dataset_name} "
             f"({config.get('epochs')} epochs, batch size {config.get('batch_size')}, {size}×{size} pixels, Keras 3 on "
             f"{config.get('backend', 'an unrecorded backend')}), made with sslcore {version}.".replace(" .", "."), "",
             "The encoder learnt from the images alone: no labels were used to train it. "
             + ("The classification head is a linear layer trained on its frozen features (the online linear probe), "
                f"over {len(class_names)} classes." if has_classifier else
                "The data had no labels, so there is no classification head: use the features.")]
    parts += ["", "## Results", ""]
    if evaluation and evaluation.get("knn_accuracy") is not None:
        k, temperature = int(evaluation["knn_k"]), float(evaluation["knn_temperature"])
        parts += ["| protocol (frozen encoder features) | accuracy |", "| --- | --- |",
                  f"| kNN: k = {k}, cosine similarity, votes weighted exp(similarity / {temperature:g}) | "
                  f"{float(evaluation['knn_accuracy']):.2%} |"]
        if evaluation.get("linear_accuracy") is not None:
            parts.append(f"| Linear: logistic regression on standardised features | {float(evaluation['linear_accuracy']):.2%} |")
        test_images, train_images = evaluation.get("test_images"), evaluation.get("train_images")
        counts = (f"{test_images} labelled images, " if test_images else "")
        bank = f"the {train_images} other labelled images" if train_images else "the other labelled images"
        parts += ["", f"Measured on the held-out split ({counts}{config.get('test_fraction', 0.2):g} of the labelled "
                  f"data, stratified, seed {config.get('seed', 0)}) with {bank} as the kNN memory bank and the "
                  "logistic regression's training set. Features are L2-normalised for kNN; scikit-learn's "
                  "StandardScaler + LogisticRegression for the linear probe. " + evaluation.get("measured", "")]
    else:
        parts.append("No held-out labelled images, so no kNN or linear accuracy was measured.")

    parts += ["", "## How to use", "", "Three lines, with Keras and huggingface_hub only:", "", "```python",
              "import keras, huggingface_hub",
              f'{"classifier" if has_classifier else "encoder"} = keras.saving.load_model(huggingface_hub.hf_hub_download('
              f'"{repo_id}", "{"classifier.keras" if has_classifier else "encoder.keras"}"))',
              (f"probabilities = classifier.predict(images)  # images: (N, {size}, {size}, 3) RGB pixels 0–255"
               if has_classifier else f"features = encoder.predict(images)  # images: (N, {size}, {size}, 3) RGB pixels 0–255"),
              "```", "",
              f"`encoder.keras` gives the features (`features = encoder.predict(images)`). Both models take pixels "
              f"0–255 at {size}×{size} and rescale them themselves; resize or centre-crop your images to that size first.",
              "", "With sslcore, which also decodes, crops and resizes image files and names the classes:", "",
              "```python", "from sslcore import hub", f'model = hub.load("{repo_id}")',
              'print(model.classify_files(["photo.jpg"], top_k=3))' if has_classifier else
              "features = model.embed(images)", "```", "",
              "or from a shell: " + (f"`python -m sslcore classify --model hf://{repo_id} photo.jpg`" if has_classifier
                                     else f"`python -c 'from sslcore import hub; hub.load(\"{repo_id}\")'`"),
              "", "This repository holds two models and a training config, so it is not the single-model folder that "
              f"`keras.saving.load_model(\"hf://{repo_id}\")` expects: download the `.keras` file you want as above."]
    if has_classifier:
        parts += ["", "### Classes", "", "Index → name of the classifier's outputs: " +
                  ", ".join(f"{i}: `{label}`" for i, label in enumerate(class_names)) + "."]

    images = [f for f in files if f.endswith(".png")]
    parts += ["", "## Training", ""]
    for image in images:
        title = {"training_curves.png": "Training curves", "tsne.png": "t-SNE of the encoder's features (held-out images)"}.get(image, image)
        parts += [f"![{title}]({image})", ""]
    for note in notes:
        parts += [f"> {note}", ""]
    parts += ["Per-epoch figures are in `metrics.jsonl`. The full training config (`config.json` holds it too, with the "
              "class names):", "", "```json", json.dumps(config, indent=2, sort_keys=False, default=str), "```"]
    parts += ["", "## Files", "", "| file | what it is |", "| --- | --- |"]
    described = {"encoder.keras": "feature extractor: RGB pixels 0–255 → features (Keras 3)",
                 "classifier.keras": "encoder + linear head + softmax → class probabilities (Keras 3)",
                 "config.json": "training config, class names, image size",
                 "metrics.jsonl": "one JSON row per epoch: loss, contrastive / probe / kNN accuracy, speed",
                 "training_curves.png": "loss and accuracies against the training step",
                 "tsne.png": "2-D t-SNE of held-out images' features, one colour per class",
                 "README.md": "this card"}
    parts += [f"| `{f}` | {described.get(f, '')} |" for f in [*files, "README.md"]]
    parts += ["", "## Limitations", "",
              "Self-supervised features reflect the images they were trained on: expect them to transfer to images "
              "like those, at the same size, and degrade on anything else. The accuracies above are on a held-out part "
              "of the same data, not on an independent benchmark."]
    return "\n".join(parts) + "\n"
