"""Audit and few-label benchmark on the 50,000 CIFAR-10 training images (``docs/audit.md`` has the figures).

Three steps, each printing one JSON line:

    audit_cifar.py train RUN [--epochs 8]      SimCLR convnet on 40,000 images (the last 1,000 of each class are
                                               held out), from ../shared/data/cifar10_train_jpeg.npz, in memory
    audit_cifar.py audit RUN FOLDER OUT        sslcore.audit on the whole folder (50,000 files written by
                                               ../shared/tools/cifar10-to-folder.py), timed, with peak memory
    audit_cifar.py label RUN [--per-class 10]  sslcore.labeling with 10 labelled training images per class,
                                               accuracy on the 10,000 held-out images
    audit_cifar.py flips RUN                   near-duplicate recall with and without flip-averaged embeddings
    audit_cifar.py crops RUN                   near-duplicate recall and false alarms with and without the crop check
                                               and the pixel-space candidates
    audit_cifar.py outliers RUN                rank of five synthetic images among the 10,000 held-out images,
                                               per outlier score

Write the folder somewhere git ignores, e.g. ``python ../shared/tools/cifar10-to-folder.py /tmp/cifar10_folder``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

NPZ = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "shared", "data", "cifar10_train_jpeg.npz")
HELD_OUT_PER_CLASS = 1000


def cifar(npz: str = NPZ):
    """(images uint8 (50000, 32, 32, 3), labels, class names, held-out mask: the last 1,000 of each class)."""
    from PIL import Image

    archive = np.load(npz)
    jpeg, offsets, labels = archive["jpeg"], archive["offsets"], archive["labels"].astype(np.int32)
    images = np.stack([np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
                       for i in range(len(labels))])
    held_out = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        held_out[np.flatnonzero(labels == label)[-HELD_OUT_PER_CLASS:]] = True
    return images, labels, [str(name) for name in archive["classes"]], held_out


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train(args) -> dict:
    from sslcore.config import TrainConfig
    from sslcore.data import Dataset
    from sslcore.trainer import Trainer

    images, labels, classes, held_out = cifar()
    dataset = Dataset(name="cifar10-jpeg", train_images=images[~held_out], train_labels=labels[~held_out],
                      test_images=images[held_out], test_labels=labels[held_out], class_names=classes)
    config = TrainConfig(method="simclr", data=f"folder:{args.folder}", image_size=32, encoder="convnet",
                         epochs=args.epochs, batch_size=256, knn_bank_size=5000, eval_size=2000, log_every_steps=20)
    started = time.perf_counter()
    summary = Trainer(config, args.run, dataset=dataset).fit()
    return {**summary, "train_seconds": round(time.perf_counter() - started, 1), "train_images": int((~held_out).sum())}


def audit(args) -> dict:
    from sslcore import audit as audit_module
    from sslcore.data import load_folder
    from sslcore.runs import RunDir

    size = int(RunDir(args.run).config()["image_size"])
    started = time.perf_counter()
    load_folder(args.folder, size, skip_bad_images=True)  # decoding (or the cache) timed apart
    decoded = time.perf_counter()
    report = audit_module.audit_folder(args.run, args.folder, args.out, threshold=args.threshold)
    finished = time.perf_counter()
    return {"images": report.images, "near_duplicate_pairs": report.summary["near_duplicates"],
            "exact_duplicate_pairs": report.summary["exact_duplicates"], "threshold": report.threshold,
            "decode_seconds": round(decoded - started, 1), "audit_seconds": round(finished - decoded, 1),
            "timings": report.timings, "peak_memory_mb": round(peak_memory_mb()), "out": args.out}


def label(args) -> dict:
    from sslcore import labeling

    images, labels, classes, held_out = cifar()
    rng = np.random.default_rng(args.seed)
    pool = np.flatnonzero(~held_out)
    examples = np.concatenate([rng.choice(pool[labels[pool] == c], args.per_class, replace=False)
                               for c in range(len(classes))])
    test = np.flatnonzero(held_out)
    results = {}
    for method, flip in (("knn", True), ("probe", True), ("knn", False), ("probe", False)):
        started = time.perf_counter()
        result = labeling.label_images(args.run, images[test], examples=images[examples], flip_average=flip,
                                       example_labels=[classes[i] for i in labels[examples]], method=method)
        predicted = np.array([classes.index(name) for name in result.labels])
        results[method + ("" if flip else "_no_flip_average")] = {
            "accuracy": round(float(np.mean(predicted == labels[test])), 4), "seconds": round(time.perf_counter() - started, 1)}
    return {"labelled_per_class": args.per_class, "held_out": int(len(test)), "seed": args.seed, **results}


def edited_pool() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 held-out images (shuffled) followed by one edited copy of the first 1,000 per edit, edit by edit;
    and the held-out images' indices in the training file."""
    from sslcore import audit as audit_module

    images, _, _, held_out = cifar()
    pool_index = np.random.default_rng(0).permutation(np.flatnonzero(held_out))
    copies = [np.stack([audit_module.apply_edit(images[i], edit, seed=n) for n, i in enumerate(pool_index[:1000])])
              for edit in audit_module.EDITS]
    return np.concatenate([images[pool_index], *copies]), pool_index


def flips(args) -> dict:
    """Near-duplicate recall per edit and false alarms, for plain vs flip-averaged and raw vs whitened embeddings.

    A pool of 10,000 held-out images plus, for 1,000 of them, one edited copy per edit (5,000 copies). An edit
    is caught at threshold t when the copy's similarity to its original is ≥ t; ``top1`` is the share of copies
    whose most similar image is their original or another copy of it. A false alarm is one of the 9,000 unedited images whose most
    similar other image scores ≥ t (CIFAR-10 has a few genuine near-duplicates, so this over-counts them).
    """
    from sslcore import audit as audit_module
    from sslcore.evaluate import normalize_rows
    from sslcore.export import embed, load_encoder

    pool, pool_index = edited_pool()
    # Which picture each pool image shows: a copy's nearest image may be another copy of the same original.
    picture = np.concatenate([np.arange(len(pool_index))] + [np.arange(1000)] * len(audit_module.EDITS))
    encoder = load_encoder(args.run)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results = {}
    for flip in (False, True):
        features = embed(encoder, pool, flip_average=flip)
        for whitened in (False, True):
            unit = audit_module.prepare(features) if whitened else normalize_rows(features)
            nearest = audit_module.nearest_other(unit)
            nearest_similarity = (unit * unit[nearest]).sum(axis=1)
            name = ("flip_average" if flip else "plain") + ("+whitened" if whitened else "+raw")
            row = {}
            for e, edit in enumerate(audit_module.EDITS):
                start = len(pool_index) + e * 1000
                similarity = (unit[:1000] * unit[start:start + 1000]).sum(axis=1)
                row[edit] = {"top1": round(float(np.mean(picture[nearest[start:start + 1000]] == np.arange(1000))), 3),
                             "median": round(float(np.median(similarity)), 3),
                             "caught": {t: round(float(np.mean(similarity >= t)), 3) for t in thresholds}}
            unedited = nearest_similarity[1000:len(pool_index)]
            row["false_alarms"] = {t: round(float(np.mean(unedited >= t)), 4) for t in thresholds}
            row["unedited_nearest_median"] = round(float(np.median(unedited)), 3)
            results[name] = row
    return {"pool": int(len(pool)), "results": results}


def crops(args) -> dict:
    """Near-duplicate recall per edit and false alarms with and without the crop check (``audit.with_crop_check``),
    on the pool of ``flips`` (10,000 held-out images, 1,000 of them copied once per edit), flip-averaged and whitened.

    A copy's similarity to its original is the audit's: the crop-checked score where one is among the other's
    ``CROP_CHECKED_CANDIDATES`` nearest images (or, in the last row, among its candidates: those plus its
    ``pixel_neighbours``), else their whitened similarity. Timed, per pool image.
    """
    from sslcore import alignment
    from sslcore import audit as audit_module
    from sslcore.export import embed, load_encoder

    pool, pool_index = edited_pool()
    unit = audit_module.prepare(embed(load_encoder(args.run), pool, flip_average=True))
    indices, similarities = audit_module.neighbours(unit, audit_module.DUPLICATE_CANDIDATES)
    started = time.perf_counter()
    checked = audit_module.with_crop_check(pool, indices, similarities)
    seconds = time.perf_counter() - started
    # What the audit does now: the pixel-space neighbours join the candidates, all of them are crop-checked, and the
    # embedding counts only where the pixels agree (PIXEL_AGREEMENT, since 2026-12-05).
    started = time.perf_counter()
    thumbs = alignment.thumbnails(pool)
    both, both_similarities = audit_module.candidate_neighbours(unit, thumbs)
    with_pixels = audit_module.with_crop_check(pool, both, both_similarities, checked=both.shape[1], thumbs=thumbs,
                                               agreement=audit_module.PIXEL_AGREEMENT)
    pixel_seconds = time.perf_counter() - started
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results = {}
    for name, indices, scores in (("whitened", indices, similarities), ("whitened+crop_check", indices, checked),
                                  ("whitened+pixel_candidates+crop_check", both, with_pixels)):
        row = {}
        for e, edit in enumerate(audit_module.EDITS):
            start = len(pool_index) + e * 1000
            similarity = (unit[:1000] * unit[start:start + 1000]).sum(axis=1)
            for k in range(1000):
                for a, b in ((start + k, k), (k, start + k)):
                    hit = indices[a] == b
                    if hit.any():
                        similarity[k] = max(similarity[k], float(scores[a][hit].max()))
            row[edit] = {"median": round(float(np.median(similarity)), 3),
                         "caught": {t: round(float(np.mean(similarity >= t)), 3) for t in thresholds}}
        # Unedited images (not the 1,000 originals) whose most similar other image reaches the threshold.
        unedited = scores[1000:len(pool_index)].max(axis=1)
        row["false_alarms"] = {t: round(float(np.mean(unedited >= t)), 4) for t in thresholds}
        results[name] = row
    return {"pool": int(len(pool)), "crop_check_seconds": round(seconds, 1),
            "pixel_candidates_and_crop_check_seconds": round(pixel_seconds, 1),
            "pixel_candidates_per_image": 2 * audit_module.PIXEL_CANDIDATES,
            "crop_checked_neighbours_per_image": audit_module.CROP_CHECKED_CANDIDATES, "results": results}


def synthetic_outliers(size: int = 32) -> dict[str, np.ndarray]:
    """Images from another domain: blocky and fine noise, a solid colour, stripes, a checkerboard."""
    rng = np.random.default_rng(1)
    stripes = np.zeros((size, size, 3), np.uint8)
    stripes[:, ::4], stripes[::8] = (255, 40, 40), (40, 220, 40)
    checker = ((np.indices((size, size)).sum(axis=0) // 4) % 2 * 255).astype(np.uint8)
    return {"blocky_noise": np.kron(rng.integers(0, 256, (size // 8, size // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8),
            "fine_noise": rng.integers(0, 256, (size, size, 3)).astype(np.uint8),
            "magenta": np.broadcast_to(np.array([255, 0, 255], np.uint8), (size, size, 3)).copy(),
            "stripes": stripes, "checker": np.stack([checker, 255 - checker, np.full_like(checker, 128)], axis=-1)}


def outliers(args) -> dict:
    """Rank (0 = most outlying) of each synthetic image under the encoder-only, low-level-only and combined scores."""
    from sslcore import audit as audit_module
    from sslcore.export import embed, load_encoder

    images, _, _, held_out = cifar()
    synthetic = synthetic_outliers()
    pool = np.concatenate([images[held_out], np.stack(list(synthetic.values()))])
    encoder = load_encoder(args.run)
    views = {"encoder": embed(encoder, pool), "low_level": audit_module.low_level_features(encoder, pool)}
    scores = {name: audit_module.combined_outlier_scores([view], args.neighbors) for name, view in views.items()}
    scores["combined"] = audit_module.combined_outlier_scores(list(views.values()), args.neighbors)
    first = len(pool) - len(synthetic)
    ranks = {name: {image: int(np.flatnonzero(np.argsort(-score, kind="stable") == first + i)[0])
                    for i, image in enumerate(synthetic)} for name, score in scores.items()}
    return {"pool": int(len(pool)), "neighbors": args.neighbors, "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("train")
    step.add_argument("run")
    step.add_argument("--epochs", type=int, default=8)
    step.add_argument("--folder", default="/tmp/cifar10_folder", help="recorded as the run's data source")
    step = steps.add_parser("audit")
    step.add_argument("run")
    step.add_argument("folder")
    step.add_argument("out")
    step.add_argument("--threshold", type=float, default=0.9)
    step = steps.add_parser("label")
    step.add_argument("run")
    step.add_argument("--per-class", type=int, default=10)
    step.add_argument("--seed", type=int, default=0)
    step = steps.add_parser("flips")
    step.add_argument("run")
    step.add_argument("--thresholds", default="0.8,0.85,0.9,0.95")
    step = steps.add_parser("crops")
    step.add_argument("run")
    step.add_argument("--thresholds", default="0.8,0.85,0.9,0.95")
    step = steps.add_parser("outliers")
    step.add_argument("run")
    step.add_argument("--neighbors", type=int, default=10)
    args = parser.parse_args()
    result = {"train": train, "audit": audit, "label": label, "flips": flips, "crops": crops, "outliers": outliers}[args.step](args)
    print(json.dumps({"step": args.step, **result}, default=float), flush=True)


if __name__ == "__main__":
    main()
