"""Which default recipe for the convnet on CIFAR-10: the seeds' recipe against candidates, same encoder and epochs.

    KERAS_BACKEND=tensorflow python benchmarks/recipe_cifar.py OUT_DIR [--epochs 20] [--recipes seeds,bn_head,...]
        [--max-minutes 10 | --budget-minutes 10]

``--budget-minutes`` gives each run a time budget (``sslcore train --budget``: it times itself and plans its length
so the schedule ends at the deadline); ``--max-minutes`` cuts a run of ``--epochs`` off at that time instead.
The recipe ``defaults`` is sslcore's own TrainConfig defaults; ``defaults_before_18`` those before issue 18 (batch 256,
cosine schedule, the seeds' ``strong`` augmentation).

Each recipe trains a SimCLR convnet at 32 px on 40,000 CIFAR-10 training images from
``../shared/data/cifar10_train_jpeg.npz`` and is evaluated on the 10,000 it never saw (the last 1,000 of each class:
``audit_cifar.cifar``): kNN (k = 200, τ 0.1, the 40,000 training images as the bank) and logistic regression on
the encoder's features. One JSON line per recipe; docs/benchmarks.md has the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from audit_cifar import cifar  # noqa: E402

# The seeds' recipe (keras.io SimCLR: BENCHMARKS.md's bare loop): Adam at a constant 1e-3, batch 512, NT-Xent τ 0.1,
# a 128-128 head without batch norm, the seeds' strong augmentation. Candidates change one family of settings each.
SEEDS = {"batch_size": 512, "learning_rate": 1e-3, "schedule": "constant", "augment": "strong", "precision": "fp32",
         "method_params": {"temperature": 0.1, "hidden_dim": 128, "head_batch_norm": False, "hidden_layers": 1}}
RECIPES = {
    "seeds": {},
    "bn_head": {"method_params": {"head_batch_norm": True}},
    "bn_head_tau0.2_cosine": {"schedule": "cosine", "method_params": {"head_batch_norm": True, "temperature": 0.2}},
    "bn_head_tau0.2_cosine_simclr_aug": {"schedule": "cosine", "augment": "simclr",
                                         "method_params": {"head_batch_norm": True, "temperature": 0.2}},
    # One change each, screened at 5 epochs before a 20-epoch run of the best combination.
    "batch256": {"batch_size": 256},
    "grayscale": {"augment_params": {"grayscale_prob": 0.2}},
    "tau0.2": {"method_params": {"temperature": 0.2}},
    "lr2e-3": {"learning_rate": 2e-3},
    "tau0.05": {"method_params": {"temperature": 0.05}},
    "head512": {"method_params": {"hidden_dim": 512}},
    # The two winners of the 5-epoch screen together (docs/benchmarks.md).
    "head512_tau0.05": {"method_params": {"hidden_dim": 512, "temperature": 0.05}},
}
DEFAULT_RECIPE = "head512_tau0.05"  # what sslcore ships as SimCLR's defaults (tests/test_methods.py checks)
MERGED = ("method_params", "augment_params")
# sslcore's defaults before issue 18's switch: batch 256, a cosine schedule, the seeds' "strong" augmentation. The
# recipes screened against them keep them, so that each name still trains what docs/benchmarks.md measured (all in
# fp32: "auto" precision came later).
BEFORE = {"batch_size": 256, "schedule": "cosine", "augment": "strong", "precision": "fp32"}
SIMCLR_COLOUR = {"brightness": 0.0, "jitter": 0.0, "color_jitter": [0.4, 0.4, 0.4, 0.1], "color_jitter_prob": 0.8,
                 "grayscale_prob": 0.2}
# Not the seeds' recipe with a change: sslcore's own defaults for every setting but those named. "defaults" is what
# sslcore ships now: an unset batch (512 on CIFAR-10), the cooldown schedule, the "contrastive" augmentation
# (`strong`'s crops with SimCLR's colour distortion), τ 0.05 and a 512-wide head, precision "auto" (bf16 on a CPU with
# AMX under TensorFlow, else fp32).
OWN_DEFAULTS = {"defaults": {}, "defaults_before_18": BEFORE,
                # Mixed bfloat16: 1.6× the images a second at 32 px on a CPU with AMX (TensorFlow's oneDNN).
                "defaults_bf16": {"precision": "bf16"}, "defaults_fp32": {"precision": "fp32"},
                "defaults_head512_tau0.05": {**BEFORE, "method_params": {"temperature": 0.05, "hidden_dim": 512}},
                "defaults_tau0.1_head128": {**BEFORE, "method_params": {"temperature": 0.1, "hidden_dim": 128}},
                # Screened at a 10-minute budget (issue 18): one change each from the defaults of then.
                "defaults_batch512": {**BEFORE, "batch_size": 512},
                "defaults_lr2e-3": {**BEFORE, "learning_rate": 2e-3},
                "defaults_crop0.14": {**BEFORE, "augment_params": {"crop_scale": [0.14, 1.0]}},
                "defaults_warmup1": {**BEFORE, "warmup_epochs": 1.0},
                # The batch and schedule of the 20-epoch runs where τ 0.05 + 512 head scored 0.516 (2026-12-01).
                "defaults_batch512_constant": {**BEFORE, "batch_size": 512, "schedule": "constant"},
                # The same with a schedule that ends at the budget's deadline: constant, then a linear cooldown to 0
                # over the last fifth of the steps.
                "defaults_batch512_cooldown": {**BEFORE, "batch_size": 512, "schedule": "cooldown"},
                "defaults_cooldown": {**BEFORE, "schedule": "cooldown"},
                # Further along the two directions that won the 5-epoch screen (a lower τ, a wider head), at batch 512
                # with a constant rate.
                "batch512_constant_tau0.03": {**BEFORE, "batch_size": 512, "schedule": "constant",
                                              "method_params": {"temperature": 0.03, "hidden_dim": 512}},
                "batch512_constant_head2048": {**BEFORE, "batch_size": 512, "schedule": "constant",
                                               "method_params": {"temperature": 0.05, "hidden_dim": 2048}},
                # SimCLR's colour distortion (jitter with p 0.8, grayscale 0.2) instead of the seeds' colour affine,
                # on the strong preset's crops.
                "batch512_constant_simclr_colour": {**BEFORE, "batch_size": 512, "schedule": "constant",
                                                    "augment_params": SIMCLR_COLOUR},
                # The three together (batch 512, a schedule that ends at the deadline, SimCLR's colour distortion):
                # what became the defaults.
                "batch512_cooldown_simclr_colour": {**BEFORE, "batch_size": 512, "schedule": "cooldown",
                                                    "augment_params": SIMCLR_COLOUR}}

def settings(name: str, epochs: int) -> dict:
    if name in OWN_DEFAULTS:
        merged = dict(OWN_DEFAULTS[name])
    else:
        change = RECIPES[name]
        merged = {**SEEDS, **{k: v for k, v in change.items() if k not in MERGED}}
        for key in MERGED:
            merged[key] = {**SEEDS.get(key, {}), **change.get(key, {})}
    return {**merged, "method": "simclr", "encoder": "convnet", "image_size": 32, "epochs": epochs,
            "knn_bank_size": 5000, "eval_size": 2000, "log_every_steps": 20, "data": "folder:cifar10-jpeg"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop each run after this much training (BENCHMARKS.md's 10-minute CPU target)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="give each run this time budget: it plans its own length (replaces --epochs)")
    args = parser.parse_args()

    from sslcore import evaluate
    from sslcore.config import TrainConfig
    from sslcore.data import Dataset
    from sslcore.trainer import Trainer

    images, labels, classes, held_out = cifar()
    dataset = Dataset(name="cifar10-jpeg", train_images=images[~held_out], train_labels=labels[~held_out],
                      test_images=images[held_out], test_labels=labels[held_out], class_names=classes)
    bank10k = np.random.default_rng(0).choice(len(dataset.train_images), 10000, replace=False)
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    for name in args.recipes.split(","):
        recipe = settings(name, args.epochs)
        if args.budget_minutes is not None:
            recipe["budget_minutes"] = args.budget_minutes
        config = TrainConfig(**recipe)
        load_before = os.getloadavg()[0]   # the machine is shared: how busy it was around the run
        started = time.perf_counter()
        trainer = Trainer(config, os.path.join(args.out, name), dataset=dataset)
        summary = trainer.fit(max_seconds=max_seconds)
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()[0]
        train_features, test_features = trainer.embed(dataset.train_images), trainer.embed(dataset.test_images)
        epochs = trainer.run.epochs()   # metrics.jsonl, read once
        result = {
            "recipe": name, "settings": recipe, "train_seconds": round(seconds, 1),
            "images_per_second": summary["images_per_second"], "stop_reason": summary["stop_reason"],
            "images_seen": summary["global_step"] * trainer.config.batch_size, "max_minutes": args.max_minutes,
            # What the settings left to the run became on this machine (batch size, "auto" precision).
            "batch_size": trainer.config.batch_size, "precision": trainer.config.precision,
            "budget_minutes": args.budget_minutes,
            "budget_plan": trainer.plan.to_dict() if getattr(trainer, "plan", None) else None,
            # The length the re-plans ended with (the first plan is budget_plan) and what they last estimated.
            "budget_state": trainer.budget_state.to_dict() if getattr(trainer, "budget_state", None) else None,
            "load_average_1min": [round(load_before, 2), round(load_after, 2)],
            "budget_error_percent": (round(100 * (seconds / (60 * args.budget_minutes) - 1), 2)
                                     if args.budget_minutes else None),
            "knn_accuracy": round(evaluate.knn_accuracy(train_features, dataset.train_labels, test_features,
                                                        dataset.test_labels), 4),
            # BENCHMARKS.md's 10-minute CPU anchors vote over a 10,000-image bank: the same, for comparison.
            "knn_accuracy_bank10k": round(evaluate.knn_accuracy(train_features[bank10k], dataset.train_labels[bank10k],
                                                                test_features, dataset.test_labels), 4),
            "linear_accuracy": round(evaluate.linear_accuracy(train_features, dataset.train_labels, test_features,
                                                              dataset.test_labels), 4),
            "knn_by_epoch": [round(row["knn_accuracy"], 4) for row in epochs],
            # Where the time went: compiling the step (timed by the budget's plan), training, per-epoch evaluation.
            "compile_seconds": (round(trainer.plan.throughput.compile_seconds, 1)
                                if getattr(trainer, "plan", None) else None),
            "epoch_train_seconds": round(sum(row["seconds"] for row in epochs), 1),
            "epoch_eval_seconds": round(sum(row["eval_seconds"] for row in epochs), 1)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
