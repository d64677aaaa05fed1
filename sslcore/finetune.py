"""Is the pretraining worth it? Train the same classifier twice on the labelled split and compare.

As in the keras.io semi-supervised SimCLR example: a **supervised baseline** (the run's encoder
architecture, randomly initialised, plus a linear head) and the run's **pretrained encoder fine-tuned**
(plus a fresh linear head) see the same labelled images with the same weak augmentation, optimizer and
epochs; only the starting weights differ. Their validation-accuracy curves on the held-out split show what
self-supervised pretraining bought. Plain ``model.fit`` on the small labelled arrays; the epochs are capped
so the comparison stays a minute-scale experiment on a CPU.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import keras

from sslcore.augment import Augmenter
from sslcore.encoders import build_encoder
from sslcore.run import Run
from sslcore.runs import write_json_atomic

MAX_EPOCHS = 30
RESULT_FILE = "finetune.json"

EpochCallback = Callable[[str, int, int, dict], None]   # (which model, epoch, epochs, logs)


def pixels_encoder_from_scratch(config: dict) -> keras.Model:
    """The run's encoder architecture with fresh weights, taking pixels 0–255 like ``encoder.keras`` does."""
    size = int(config["image_size"])
    inputs = keras.Input((size, size, 3), name="pixels")
    backbone = build_encoder(config["encoder"], size, config.get("encoder_width"))
    features = backbone(keras.layers.Rescaling(1 / 255.0, name="to_unit_range")(inputs))
    return keras.Model(inputs, features, name="encoder_from_scratch")


def classifier_on(encoder: keras.Model, num_classes: int, seed: int = 0) -> keras.Model:
    """Weak augmentation (training only) → encoder → linear head, taking pixels 0–255."""
    size = int(encoder.input.shape[1])
    inputs = keras.Input((size, size, 3), name="pixels")
    # The Augmenter works on [0, 1] images and the encoders take 0–255 pixels: scale down, augment, scale back.
    unit = keras.layers.Rescaling(1 / 255.0)(inputs)
    augmented = Augmenter("weak", seed=seed, name="weak_augmentation")(unit)
    features = encoder(keras.layers.Rescaling(255.0)(augmented))
    logits = keras.layers.Dense(num_classes, name="linear_head")(features)
    return keras.Model(inputs, logits, name="classifier")


class _Report(keras.callbacks.Callback):
    def __init__(self, name: str, epochs: int, on_epoch: EpochCallback | None):
        super().__init__()
        self.name, self.epochs, self.on_epoch = name, epochs, on_epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.on_epoch:
            self.on_epoch(self.name, epoch + 1, self.epochs, dict(logs or {}))


def baseline_vs_finetune(run_path: str | os.PathLike, *, epochs: int = 10, batch_size: int = 128,
                         learning_rate: float = 1e-3, seed: int = 0,
                         on_epoch: EpochCallback | None = None) -> dict:
    """Train both classifiers; returns (and saves as ``finetune.json`` in the run) their per-epoch histories."""
    if not 1 <= int(epochs) <= MAX_EPOCHS:
        raise ValueError(f"epochs must be between 1 and {MAX_EPOCHS}; got {epochs}")
    run = Run(run_path)
    config = run.config
    data = run.dataset()
    if data.labelled_images is None or data.test_images is None:
        raise ValueError(f"Run {run.name} was trained on unlabelled data ({config['data']}): "
                         "a baseline and a fine-tune need labelled images")
    x_train, y_train = data.labelled_images.astype("float32"), data.labelled_labels
    x_test, y_test = data.test_images.astype("float32"), data.test_labels
    batch_size = max(2, min(int(batch_size), len(x_train)))
    started = time.perf_counter()
    encoders = {"baseline": lambda: pixels_encoder_from_scratch(config),
                "finetuned": lambda: keras.saving.load_model(run.dir.encoder_path, compile=False)}
    histories = {}
    for name, make_encoder in encoders.items():
        keras.utils.set_random_seed(seed)   # the same head initialisation and batch order for both
        model = classifier_on(make_encoder(), data.num_classes, seed)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        history = model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=int(epochs),
                            batch_size=batch_size, verbose=0, callbacks=[_Report(name, int(epochs), on_epoch)])
        histories[name] = {key: [float(v) for v in values] for key, values in history.history.items()}
    result = {"run": run.name, "epochs": int(epochs), "batch_size": batch_size, "learning_rate": learning_rate,
              "labelled_images": int(len(x_train)), "test_images": int(len(x_test)), "histories": histories,
              "final_val_accuracy": {name: h["val_accuracy"][-1] for name, h in histories.items()},
              "seconds": time.perf_counter() - started}
    write_json_atomic(run.path / RESULT_FILE, result)
    return result


def saved_result(run_path: str | os.PathLike) -> dict | None:
    """The last comparison saved in the run folder, if any."""
    import json

    path = os.path.join(os.fspath(run_path), RESULT_FILE)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
