"""Quality checks and content outliers of the audit, measured on CIFAR-10 and digits (``docs/audit.md`` has the figures).

    audit_quality.py quality            each quality check's false-alarm rate on clean images (all 50,000 CIFAR-10
                                        training images, the 10,000 held out, the 1,797 digits in grey and
                                        colourised), and the share of 1,000 held-out images flagged after each edit
    audit_quality.py content RUN        outliers by content: 250 held-out cats and dogs with 10 held-out trucks, all
                                        32 px; share of the trucks in the top 20 of each score, mean over 20 draws
    audit_quality.py signals RUN        the same folder: more signals (views averaged, per-image loss of its views,
                                        layers concatenated, distance from the mean, anti-hubs, rank averages) and
                                        how separable the trucks are with labels (issue 16)

Each prints one JSON line. CIFAR-10 comes from ../shared/data/cifar10_train_jpeg.npz (``audit_cifar.cifar``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from audit_cifar import cifar  # noqa: E402


def flagged_share(images: np.ndarray, start: int = 0) -> dict[str, float]:
    """Percent of ``images[start:]`` each check flags, judged within all of ``images`` (the folder)."""
    from sslcore import quality

    scores = quality.quality_scores(images)
    return {check: round(100 * float(np.mean(values[start:] < quality.THRESHOLDS[check])), 2)
            for check, values in scores.items()}


def quality_step(args) -> dict:
    from PIL import Image, ImageFilter
    from sklearn.datasets import load_digits

    from sslcore import quality
    from sslcore.data.decode import decode_image
    from tests.corpus import digit_pictures

    images, _, _, held_out = cifar()
    clean = images[held_out]
    digits = load_digits().images
    gray_digits = np.stack([decode_image(Image.fromarray((d * 255 / 16).astype(np.uint8)), 32) for d in digits])
    colour_digits = np.stack([decode_image(Image.fromarray(p), 32) for p in digit_pictures()[0]])
    result = {"clean": {"cifar_50000": flagged_share(images), "cifar_held_out_10000": flagged_share(clean),
                        "digits_gray_1797": flagged_share(gray_digits),
                        "digits_colourised_1797": flagged_share(colour_digits)}}
    # Edited copies of 1,000 held-out images, each edit judged among the 10,000 clean ones (the rest of the folder).
    base = clean[np.random.default_rng(0).choice(len(clean), 1000, replace=False)].astype(np.float32)
    mean = base.mean(axis=(1, 2), keepdims=True)

    def blurred(radius):   # a Gaussian blur of the photo at twice the size, as a blurred file decoded to 32 px is
        return np.stack([np.asarray(Image.fromarray(a.astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
                                    .filter(ImageFilter.GaussianBlur(radius)).resize((32, 32), Image.Resampling.BICUBIC))
                         for a in base])

    edits = {
        ("dark", "brightness x0.25"): base * 0.25, ("dark", "brightness x0.33"): base * 0.33,
        ("dark", "brightness x0.4"): base * 0.4,
        ("light", "distance to white x0.25"): 255 - (255 - base) * 0.25,
        ("light", "distance to white x0.33"): 255 - (255 - base) * 0.33,
        ("light", "distance to white x0.4"): 255 - (255 - base) * 0.4,
        ("blurry", "Gaussian sigma 1 px"): blurred(2), ("blurry", "Gaussian sigma 0.5 px"): blurred(1),
        ("low_information", "contrast x0.05"): mean + (base - mean) * 0.05,
        ("low_information", "contrast x0.1"): mean + (base - mean) * 0.1,
        ("low_information", "flat colour + noise sd 2"): mean + np.random.default_rng(1).normal(0, 2, base.shape),
        ("grayscale", "luma only"): np.repeat(base @ quality.LUMA, 3).reshape(base.shape),
    }
    result["edited"] = {}
    for (check, edit), edited in edits.items():
        edited = np.clip(edited, 0, 255).round().astype(np.uint8)
        share = flagged_share(np.concatenate([clean, edited]), start=len(clean))[check]
        result["edited"][f"{check}: {edit}"] = share
    result["thresholds"] = quality.THRESHOLDS
    return result


# ---------------------------------------------------------------------------------------------- content outliers


def colour_statistics(images: np.ndarray) -> np.ndarray:
    """Per-channel mean and spread, and the square root of a 4 × 4 × 4 colour histogram."""
    unit = images.astype(np.float32) / 255
    bins = (images // 64).astype(np.int64)
    cells = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
    histogram = np.stack([np.bincount(c.ravel(), minlength=64) for c in cells]) / cells[0].size
    return np.concatenate([unit.mean(axis=(1, 2)), unit.std(axis=(1, 2)), np.sqrt(histogram)], axis=1)


def texture_statistics(images: np.ndarray) -> np.ndarray:
    """Gradient-orientation histograms (8 bins, weighted by magnitude) of the four quarters, and the log mean gradient."""
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gx, gy = luma[:, 1:-1, 2:] - luma[:, 1:-1, :-2], luma[:, 2:, 1:-1] - luma[:, :-2, 1:-1]
    magnitude = np.hypot(gx, gy)
    orientation = np.clip(((np.arctan2(gy, gx) % np.pi) / np.pi * 8).astype(np.int64), 0, 7)
    half = magnitude.shape[1] // 2
    parts = []
    for rows in (slice(0, half), slice(half, None)):
        for cols in (slice(0, half), slice(half, None)):
            h = np.stack([np.bincount(o.ravel(), weights=m.ravel(), minlength=8)
                          for o, m in zip(orientation[:, rows, cols], magnitude[:, rows, cols])])
            parts.append(h / np.maximum(h.sum(axis=1, keepdims=True), 1e-6))
    return np.concatenate(parts + [np.log1p(magnitude.mean(axis=(1, 2)))[:, None]], axis=1)


def layer_features(encoder, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every rectified 4-D feature map of the encoder, average-pooled and averaged with the mirror image's."""
    import keras

    inner = next(layer for layer in encoder.layers if isinstance(layer, keras.Model))
    features = {}
    for layer in inner.layers:
        if len(layer.output.shape) == 4 and getattr(getattr(layer, "activation", None), "__name__", "") == "relu":
            probe = keras.Model(inner.input, layer.output)
            features[layer.name] = sum(np.asarray(probe.predict(batch.astype(np.float32) / 255.0, batch_size=256,
                                                                verbose=0)).mean(axis=(1, 2))
                                       for batch in (images, images[:, :, ::-1])) / 2
    return features


def content_step(args) -> dict:
    from sklearn.neighbors import LocalOutlierFactor

    from sslcore import audit
    from sslcore.evaluate import normalize_rows
    from sslcore.export import embed, load_encoder

    images, labels, classes, held_out = cifar()
    pool = np.flatnonzero(held_out & np.isin(labels, [classes.index(c) for c in ("cat", "dog", "truck")]))
    encoder = load_encoder(args.run)
    embedding = embed(encoder, images[pool], flip_average=True)
    early = audit.low_level_features(encoder, images[pool])
    layers = layer_features(encoder, images[pool])
    colour, texture = colour_statistics(images[pool]), texture_statistics(images[pool])

    def knn(features, k=10, standardise=False):
        if standardise:
            features = (features - features.mean(0)) / np.maximum(features.std(0), 1e-6)
        return audit.outlier_scores(audit.neighbours(normalize_rows(features), k)[1], k)

    z = audit.robust_z
    recalls: dict[str, list[float]] = {}
    for seed in range(args.draws):
        rng = np.random.default_rng(seed)
        chosen = np.concatenate([rng.choice(np.flatnonzero(labels[pool] == classes.index(name)), count, replace=False)
                                 for name, count in (("cat", 125), ("dog", 125), ("truck", 10))])
        truck = labels[pool][chosen] == classes.index("truck")
        e = embedding[chosen]
        scores = {
            "default: embedding + early map (k=10)": audit.combined_outlier_scores([e, early[chosen]], 10),
            "embedding (k=10)": knn(e), "embedding (k=40)": knn(e, 40), "whitened embedding (k=10)": knn(audit.prepare(e)),
            **{f"{name} map (k=10)": knn(values[chosen]) for name, values in layers.items()},
            **{f"embedding + {name} map (k=10)": z(knn(e)) + z(knn(values[chosen])) for name, values in layers.items()},
            "colour statistics (k=10)": knn(colour[chosen], standardise=True),
            "texture statistics (k=10)": knn(texture[chosen], standardise=True),
            "embedding + colour (k=10)": z(knn(e)) + z(knn(colour[chosen], standardise=True)),
            "embedding + colour + texture (k=10)": z(knn(e)) + z(knn(colour[chosen], standardise=True))
                                                   + z(knn(texture[chosen], standardise=True)),
            "embedding, local outlier factor (k=20)": -LocalOutlierFactor(20, metric="cosine").fit(e).negative_outlier_factor_,
            "random order": rng.random(len(chosen)),
        }
        for name, score in scores.items():
            top = np.argsort(-score, kind="stable")[:20]
            recalls.setdefault(name, []).append(float(truck[top].sum() / truck.sum()))
    return {"folder": "125 cats + 125 dogs + 10 trucks, held out, 32 px", "draws": args.draws,
            "trucks_in_top_20": {name: {"mean": round(float(np.mean(v)), 3), "sd": round(float(np.std(v)), 3)}
                                 for name, v in recalls.items()}}


def view_embeddings(encoder, images: np.ndarray, preset: str, views: int = 8, seed: int = 0) -> np.ndarray:
    """(N, views, D): the encoder's embedding of ``views`` random augmented views of each image (``preset``)."""
    import keras

    from sslcore.augment import augment, augment_config
    from sslcore.export import embed

    generator, config = keras.random.SeedGenerator(seed), augment_config(preset)
    out = []
    for _ in range(views):
        drawn = [keras.ops.convert_to_numpy(augment(images[s:s + 500].astype(np.float32) / 255, config, generator))
                 for s in range(0, len(images), 500)]
        out.append(embed(encoder, np.concatenate(drawn) * 255, flip_average=False))
    return np.stack(out, axis=1)


def view_loss(views: np.ndarray, temperature: float = 0.2) -> np.ndarray:
    """Per image, SimCLR's loss of its views: each view against the image's other views, among all views of the
    folder (mean over its views). High: the model finds the image hard to match with its own views."""
    n, count, _ = views.shape
    unit = (views / np.linalg.norm(views, axis=2, keepdims=True)).reshape(n * count, -1)
    logits = unit @ unit.T / temperature
    np.fill_diagonal(logits, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    owner = np.repeat(np.arange(n), count)
    same = owner[:, None] == owner[None, :]
    np.fill_diagonal(same, False)
    positive = np.where(same, logits, 0).sum(axis=1) / (count - 1)
    return (log_sum - positive).reshape(n, count).mean(axis=1)


def signals_step(args) -> dict:
    """More content-outlier signals on the folder of ``content`` (issue 16): each alone, rank-averaged, and how
    separable the trucks are at all (supervised, an upper bound no outlier score reaches)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from sslcore import audit
    from sslcore.evaluate import normalize_rows
    from sslcore.export import embed, load_encoder

    images, labels, classes, held_out = cifar()
    pool = np.flatnonzero(held_out & np.isin(labels, [classes.index(c) for c in ("cat", "dog", "truck")]))
    encoder = load_encoder(args.run)
    x = images[pool]
    features = {"embedding": embed(encoder, x, flip_average=True), **layer_features(encoder, x),
                "colour": colour_statistics(x), "texture": texture_statistics(x)}
    views = {preset: view_embeddings(encoder, x, preset) for preset in ("weak", "strong")}
    is_truck = labels[pool] == classes.index("truck")
    result = {"folder": "125 cats + 125 dogs + 10 trucks, held out, 32 px", "draws": args.draws,
              "supervised_auroc_all_3000": {}}
    for name in ("embedding", "conv3", "conv4", "colour", "texture"):
        values = features[name]
        values = normalize_rows(values) if name not in ("colour", "texture") else \
            (values - values.mean(0)) / np.maximum(values.std(0), 1e-6)
        predicted = cross_val_predict(LogisticRegression(max_iter=2000), values, is_truck, cv=5, method="predict_proba")
        result["supervised_auroc_all_3000"][name] = round(float(roc_auc_score(is_truck, predicted[:, 1])), 3)

    def knn(values, k=10, standardise=False):
        if standardise:
            values = (values - values.mean(0)) / np.maximum(values.std(0), 1e-6)
        return audit.outlier_scores(audit.neighbours(normalize_rows(values), k)[1], k)

    def rank(score):
        return np.argsort(np.argsort(score, kind="stable")) / (len(score) - 1)

    def centroid(values):
        unit = normalize_rows(values)
        mean = unit.mean(0)
        return -(unit @ mean) / np.linalg.norm(mean)

    recalls: dict[str, list[float]] = {}
    truck_neighbours, auroc = [], []
    for seed in range(args.draws):
        rng = np.random.default_rng(seed)
        chosen = np.concatenate([rng.choice(np.flatnonzero(labels[pool] == classes.index(name)), count, replace=False)
                                 for name, count in (("cat", 125), ("dog", 125), ("truck", 10))])
        truck = is_truck[chosen]
        f = {name: values[chosen] for name, values in features.items()}
        v = {preset: values[chosen] for preset, values in views.items()}
        nearest, similarity = audit.neighbours(normalize_rows(f["embedding"]), 10)
        truck_neighbours.append(float(truck[nearest[truck]].mean()))
        auroc.append(float(roc_auc_score(truck, audit.outlier_scores(similarity, 10))))
        layers = [normalize_rows(f[name]) for name in ("conv1", "conv2", "conv3", "conv4")] + [normalize_rows(f["embedding"])]
        scores = {
            "embedding (k=10)": knn(f["embedding"]), "embedding (k=40)": knn(f["embedding"], 40),
            "embedding (k=80)": knn(f["embedding"], 80),
            "conv4 map (k=40)": knn(f["conv4"], 40),
            "embedding averaged over 8 weak views (k=40)": knn(v["weak"].mean(1), 40),
            "embedding averaged over 8 strong views (k=40)": knn(v["strong"].mean(1), 40),
            "per-image loss of its 8 strong views (hard to match first)": view_loss(v["strong"]),
            "per-image loss of its 8 strong views (easiest to match first)": -view_loss(v["strong"]),
            "all layers and the embedding, concatenated (k=10)": knn(np.concatenate(layers, 1)),
            "distance from the folder's mean embedding": centroid(f["embedding"]),
            "anti-hub: fewest appearances among others' 10 nearest": -np.bincount(
                nearest.ravel(), minlength=len(chosen)).astype(float),
        }
        scores["rank average: embedding k=40 + conv4 k=40"] = rank(scores["embedding (k=40)"]) + rank(scores["conv4 map (k=40)"])
        scores["rank average: embedding k=40 + colour + texture"] = (
            rank(scores["embedding (k=40)"]) + rank(knn(f["colour"], standardise=True)) + rank(knn(f["texture"], standardise=True)))
        scores["rank average: embedding k=40 + strong views k=40 + per-image loss (hard first)"] = (
            rank(scores["embedding (k=40)"]) + rank(scores["embedding averaged over 8 strong views (k=40)"])
            + rank(scores["per-image loss of its 8 strong views (hard to match first)"]))
        scores["rank average: embedding k=40 + conv4 k=40 + distance from the mean"] = (
            rank(scores["embedding (k=40)"]) + rank(scores["conv4 map (k=40)"])
            + rank(scores["distance from the folder's mean embedding"]))
        for name, score in scores.items():
            top = np.argsort(-score, kind="stable")[:20]
            recalls.setdefault(name, []).append(float(truck[top].sum() / truck.sum()))
    result["share_of_a_trucks_10_nearest_that_are_trucks"] = round(float(np.mean(truck_neighbours)), 3)
    result["auroc_embedding_knn10"] = round(float(np.mean(auroc)), 3)
    result["trucks_in_top_20"] = {name: {"mean": round(float(np.mean(v)), 3), "sd": round(float(np.std(v)), 3)}
                                  for name, v in recalls.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("quality")
    step = steps.add_parser("content")
    step.add_argument("run")
    step.add_argument("--draws", type=int, default=20)
    step = steps.add_parser("signals")
    step.add_argument("run")
    step.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    result = {"quality": quality_step, "content": content_step, "signals": signals_step}[args.step](args)
    print(json.dumps({"step": args.step, **result}), flush=True)


if __name__ == "__main__":
    main()
