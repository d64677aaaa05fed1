"""A fair comparison of every registered method on CIFAR-10: same encoder, data, augmentation, epochs,
batch, optimizer and seed; one fresh subprocess per method (so each one's peak memory is its own).

Writes ``docs/methods.md`` (the table) and ``docs/img/methods_accuracy.png`` (a bar chart drawn with Pillow).

Data: ``../shared/data/cifar10_train_jpeg.npz`` (CIFAR-10's 50,000 training images as JPEG bytes; never
committed; it is sorted by class). **The held-out test split is the last 1,000 images of each class
(10,000 images)**; every accuracy is reported on it. The pretraining pool is the first ``--train / 10``
images of each class (their labels are used only by the online probe, the kNN memory bank and the
offline linear probe).

Evaluation, after training, on encoder features (never projections), as ``../shared/BENCHMARKS.md``:
* kNN top-1: ``sslcore.evaluate.knn_accuracy``, k = 200, τ = 0.1, the training pool as memory bank;
* linear probe: ``sslcore.evaluate.linear_accuracy`` (logistic regression on standardised frozen features,
  fit on the training pool);
* online probe: the trainer's linear probe, trained alongside the method on detached features.
Throughput: source images per second of training (mean over the epochs after the first, which compiles),
excluding evaluation. Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the method's own
subprocess (resident set, framework and data included).

Usage (about 35 minutes on 2 CPU cores with the defaults):
    KERAS_BACKEND=tensorflow python benchmarks/compare_methods.py [--train 10000] [--epochs 4] [--batch 256]
        [--methods simclr,byol] [--results PATH.json] [--render-only]
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10_train_jpeg.npz")
TEST_PER_CLASS = 1_000        # the last 1,000 images of each class (10,000 in all) are the held-out test split
DOC = os.path.join(ROOT, "docs", "methods.md")
PLOT = os.path.join(ROOT, "docs", "img", "methods_accuracy.png")

# Where the budget (a few epochs of 10,000 images, batch 256) is not what a method was designed for:
# what the papers and the peers' benchmark pages (lightly, solo-learn) say it needs to shine.
NOTES = {
    "simclr": "Benefits from larger batches (more negatives: the paper uses 4,096) and long training.",
    "moco": "The queue makes it independent of batch size, but its keys come from a momentum encoder (0.99) "
            "that lags the online one: a few hundred steps is little time for them to become good.",
    "barlow_twins": "Likes a wide projector (8,192 in the paper) and hundreds of epochs; its loss is "
                    "insensitive to batch size.",
    "nnclr": "Its anchors come from the support set: while the set holds embeddings of a barely trained "
             "network the nearest neighbours are poor, so it gains most in long runs (paper: 1,000 epochs, "
             "support set 98,304).",
    "dcclr": "Designed to need smaller batches than SimCLR (its gains grow as the batch shrinks; lightly's "
             "ImageNet run at batch 256: linear 65.1 against SimCLR's 63.2); otherwise SimCLR's needs.",
    "hsic_twins": "As Barlow Twins: long training; runs with Tsai et al.'s CIFAR-10 projector (128-d, λ = 1/128), "
                  "narrower than Barlow Twins' 512-d here.",
    "twist": "Needs many epochs for its classes to settle (the seeds' 30-epoch STL-10 runs had it last, 0.45 "
             "probe); the paper uses 4,096 classes and multi-crop.",
    "dino": "The paper trains hundreds of epochs with multi-crop (extra small views, left out here for every "
            "method) and warms the teacher temperature up; given 800 epochs it matches SimCLR (lightly's "
            "Imagenette benchmark, ResNet-18: kNN 0.888 against 0.889).",
    "byol": "A momentum target (0.99 → 1) and a predictor, designed for long training (lightly: kNN 0.868 at "
            "200 epochs, above its SimCLR's 0.848); in a few hundred steps its target barely moves.",
    "simsiam": "No momentum, no negatives: the paper trains 800 epochs on CIFAR-10 with SGD at learning rate "
               "0.03·batch/256 (lightly's Imagenette benchmark, 800 epochs: kNN 0.872).",
    "vicreg": "A wide expander (8,192) helps; insensitive to batch size.",
}


def split_indices(labels, train: int):
    """(train, test) indices: the file is sorted by class, so both splits are taken class by class.

    Test: the last ``TEST_PER_CLASS`` images of each class. Train: the first ``train / classes`` of each
    class (class-balanced, never overlapping the test split).
    """
    import numpy as np

    classes = np.unique(labels)
    per_class = train // len(classes)
    train_index, test_index = [], []
    for label in classes:
        members = np.flatnonzero(labels == label)
        if per_class > len(members) - TEST_PER_CLASS:
            raise ValueError(f"--train {train} overlaps the held-out split; use at most "
                             f"{(len(members) - TEST_PER_CLASS) * len(classes)}")
        train_index.append(members[:per_class])
        test_index.append(members[-TEST_PER_CLASS:])
    return np.concatenate(train_index), np.concatenate(test_index)


def load_cifar(train: int):
    """(train_images, train_labels, test_images, test_labels, class_names) decoded with Pillow, uint8 32×32×3."""
    import numpy as np
    from PIL import Image

    with np.load(DATA) as archive:
        jpeg, offsets, labels = archive["jpeg"], archive["offsets"], archive["labels"]
        classes = [str(name) for name in archive["classes"]]
    train_index, test_index = split_indices(labels, train)

    def decode(indices):
        return np.stack([np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                         for i in indices])

    return (decode(train_index), labels[train_index].astype("int32"), decode(test_index),
            labels[test_index].astype("int32"), classes)


def run_one(method: str, train: int, epochs: int, batch: int, seed: int) -> dict:
    """Train one method and evaluate it; runs in its own subprocess (see ``main``)."""
    import resource

    import keras
    import numpy as np

    from sslcore import evaluate
    from sslcore.config import TrainConfig
    from sslcore.data import Dataset
    from sslcore.trainer import Trainer

    train_images, train_labels, test_images, test_labels, classes = load_cifar(train)
    dataset = Dataset(name="cifar10-jpeg", train_images=train_images, train_labels=train_labels,
                      test_images=test_images, test_labels=test_labels, class_names=classes)
    # The per-epoch kNN of the trainer runs on small subsets (it is only a progress figure here); the
    # reported figures are computed below on the whole held-out split.
    config = TrainConfig(method=method, encoder="convnet", data="cifar10-jpeg", image_size=32, epochs=epochs,
                         batch_size=batch, seed=seed, knn_bank_size=2000, eval_size=1000, log_every_steps=10)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, folder, dataset=dataset)
        started = time.perf_counter()
        summary = trainer.fit()
        train_seconds = time.perf_counter() - started
        rows = trainer.run.epochs()
    later = rows[1:] or rows
    train_features, test_features = trainer.embed(train_images), trainer.embed(test_images)
    knn = evaluate.knn_accuracy(train_features, train_labels, test_features, test_labels, k=200, temperature=0.1)
    linear = evaluate.linear_accuracy(train_features, train_labels, test_features, test_labels)
    logits = trainer.model.linear_probe.predict(test_features, batch_size=1024, verbose=0)
    online = float(np.mean(np.argmax(logits, axis=1) == test_labels))
    return {"method": method, "backend": keras.backend.backend(), "train_images": train, "epochs": epochs,
            "batch": batch, "seed": seed, "knn_accuracy": knn, "linear_accuracy": linear, "online_probe_accuracy": online,
            "images_per_second": sum(r["images_per_second"] for r in later) / len(later),
            "train_seconds": train_seconds, "final_loss": summary["loss"], "collapse_std": summary["collapse_std"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


# ---- the page and the chart ----

def _describe(name: str) -> str:
    from sslcore.methods import METHODS
    return METHODS[name].description


def write_doc(results: list[dict], meta: dict, path: str = DOC) -> None:
    ordered = sorted(results, key=lambda r: -r["knn_accuracy"])
    lines = [
        "# Methods compared on CIFAR-10",
        "",
        "Every registered method trained with the same budget, then evaluated the same way. Generated by",
        "`benchmarks/compare_methods.py` (re-run it to refresh this page; `--render-only` redraws it from saved results).",
        "",
        f"**Set-up.** {meta['train_images']:,} CIFAR-10 training images (the first {meta['train_images'] // 10:,} of each "
        "class in `shared/data/cifar10_train_jpeg.npz`) at 32 px; **held-out test split: the last 1,000 images of each "
        "class in that file (10,000 images)**, never trained on. Encoder `convnet` (the seeds' 4 × Conv2D(128) + Dense(128)), "
        f"{meta['epochs']} epochs, "
        f"batch {meta['batch']}, Adam 1e-3 with cosine decay, `strong` augmentation, seed {meta['seed']}, fp32, each "
        "method's default settings (the table in the README). Backend "
        f"`{meta['backend']}` on {meta['machine']}, {meta['date']}; the machine was shared with other work, so "
        "images/s are comparable within this table only roughly.",
        "",
        "**Measures.** kNN: top-1 of a k = 200, τ = 0.1 similarity-weighted vote over L2-normalised encoder features, "
        "training images as the memory bank (`sslcore.evaluate.knn_accuracy`). Linear: logistic regression on "
        "standardised frozen encoder features fit on the training images (`sslcore.evaluate.linear_accuracy`). "
        "Online probe: the trainer's linear probe, learnt during pretraining on detached features. Images/s: source "
        "images per second of training, mean of the epochs after the first (which compiles), evaluation excluded. "
        "Peak memory: `ru_maxrss` of the method's own subprocess (resident set size: framework, data and model).",
        "",
        "| method | kNN top-1 | linear | online probe | images/s | peak memory (MiB) | final loss | collapse std |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in ordered:
        lines.append(f"| `{r['method']}` | {r['knn_accuracy']:.3f} | {r['linear_accuracy']:.3f} | "
                     f"{r['online_probe_accuracy']:.3f} | {r['images_per_second']:,.0f} | {r['peak_rss_mib']:,.0f} | "
                     f"{r['final_loss']:.4g} | {r['collapse_std']:.2f} |")
    lines += [
        "",
        "A few epochs from scratch is a short budget: these figures rank how fast each method gets going on a small "
        "encoder, not where it ends. Chance is 0.100. Collapse std: the spread of the L2-normalised embeddings "
        "over the batch, ×√d (about 1 when spread, 0 when collapsed; `sslcore.losses.collapse_std`).",
        "",
        "![kNN and linear accuracy per method](img/methods_accuracy.png)",
        "",
        "## What each method needs to shine",
        "",
        "| method | what its loss does | beyond this budget |",
        "|---|---|---|",
    ]
    for r in ordered:
        lines.append(f"| `{r['method']}` | {_describe(r['method'])} | {NOTES.get(r['method'], '')} |")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def draw_chart(results: list[dict], path: str = PLOT) -> None:
    """Grouped horizontal bars (kNN, linear) per method, best first; Pillow only (no plotting library needed)."""
    from PIL import Image, ImageDraw, ImageFont

    ordered = sorted(results, key=lambda r: -r["knn_accuracy"])
    row, left, right, top = 44, 150, 70, 70
    width, height = 900, top + row * len(ordered) + 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    try:
        font, small = ImageFont.load_default(size=16), ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = small = ImageFont.load_default()
    colours = {"kNN (k=200)": "#2563eb", "linear probe": "#ea580c"}
    draw.text((left, 14), "CIFAR-10 held-out accuracy (last 1,000 images of each class), convnet encoder", fill="black", font=font)
    for index, (label, colour) in enumerate(colours.items()):
        x = left + index * 170
        draw.rectangle([x, 42, x + 14, 56], fill=colour)
        draw.text((x + 20, 41), label, fill="black", font=small)
    span = width - left - right
    axis_max = max(0.1, max(max(r["knn_accuracy"], r["linear_accuracy"]) for r in ordered))
    axis_max = min(1.0, (int(axis_max * 10) + 1) / 10)
    bottom = top + row * len(ordered)
    for tick in range(0, int(round(axis_max * 10)) + 1):
        x = left + span * tick / 10 / axis_max
        draw.line([x, top - 4, x, bottom], fill="#e5e7eb")
        draw.text((x - 10, bottom + 6), f"{tick / 10:.1f}", fill="#374151", font=small)
    chance = left + span * 0.1 / axis_max
    draw.line([chance, top - 4, chance, bottom], fill="#9ca3af", width=2)
    draw.text((chance + 3, bottom + 24), "chance", fill="#6b7280", font=small)
    for i, r in enumerate(ordered):
        y = top + i * row
        draw.text((10, y + 12), r["method"], fill="black", font=font)
        for j, (key, colour) in enumerate(zip(("knn_accuracy", "linear_accuracy"), colours.values())):
            y0 = y + 4 + j * 18
            x1 = left + span * r[key] / axis_max
            draw.rectangle([left, y0, x1, y0 + 15], fill=colour)
            draw.text((x1 + 4, y0), f"{r[key]:.3f}", fill="#111827", font=small)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, optimize=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=10_000, help="pretraining images (the first N/10 of each class)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="", help="comma-separated; default: every registered method")
    parser.add_argument("--results", default=os.path.join(tempfile.gettempdir(), "sslcore_compare_methods.json"),
                        help="where the raw results are kept (one JSON list); the page is drawn from it")
    parser.add_argument("--render-only", action="store_true", help="redraw the page and chart from --results")
    parser.add_argument("--one", help=argparse.SUPPRESS)   # internal: train one method, print its JSON
    args = parser.parse_args(argv)

    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.train, args.epochs, args.batch, args.seed)), flush=True)
        return


    from sslcore.methods import METHODS

    methods = [m for m in args.methods.split(",") if m] or list(METHODS)
    results = []
    if args.render_only or os.path.exists(args.results):
        with open(args.results) as handle:
            results = [r for r in json.load(handle)
                       if (r["train_images"], r["epochs"], r["batch"], r["seed"]) == (args.train, args.epochs, args.batch, args.seed)]
    if not args.render_only:
        results = [r for r in results if r["method"] not in methods]
        for method in methods:
            started = time.perf_counter()
            command = [sys.executable, os.path.abspath(__file__), "--one", method, "--train", str(args.train),
                       "--epochs", str(args.epochs), "--batch", str(args.batch), "--seed", str(args.seed)]
            child = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
            if child.returncode != 0 or not lines:
                print(f"{method}: failed (exit {child.returncode})\n{child.stderr[-3000:]}", flush=True)
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            results.append(result)
            print(f"{method}: kNN {result['knn_accuracy']:.3f}  linear {result['linear_accuracy']:.3f}  "
                  f"online {result['online_probe_accuracy']:.3f}  {result['images_per_second']:.0f} img/s  "
                  f"{result['peak_rss_mib']:.0f} MiB  ({time.perf_counter() - started:.0f} s)", flush=True)
            with open(args.results, "w") as handle:
                json.dump(results, handle, indent=1)
    if not results:
        raise SystemExit("no results to write")
    meta = {"train_images": args.train, "epochs": args.epochs, "batch": args.batch, "seed": args.seed,
            "backend": results[0]["backend"], "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
            "date": datetime.date.today().isoformat()}
    write_doc(results, meta)
    draw_chart(results)
    print(f"wrote {DOC} and {PLOT}", flush=True)


if __name__ == "__main__":
    main()
