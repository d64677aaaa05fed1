"""``sslcore audit`` beside fastdup, cleanvision and imagededup, on the same folders (``docs/audit.md`` has the table).

    audit_peers.py --peer-python /work/peers-venv/bin/python --work /tmp/audit_peers [--run RUN] [--init RUN] [--epochs 30]

The peers are **not** dependencies of sslcore: install them into a separate virtual environment (they pin numpy,
torch and others) and name its interpreter with ``--peer-python``::

    python3 -m venv /work/peers-venv && /work/peers-venv/bin/pip install fastdup cleanvision imagededup

Each tool runs in its own subprocess (peers with ``--peer-python``, offline, fastdup's telemetry off through
``SENTRY_OPT_OUT``; ``sslcore audit`` with this interpreter), and is timed from start to end of that subprocess.
A tool that is not installed is reported as such and skipped.

The folders are built here, from held-out CIFAR-10 images (the last 1,000 of each class in
``../shared/data/cifar10_train_jpeg.npz``, ``audit_cifar.cifar``), each upscaled to ``--side`` px (128) and saved
as PNG:

    content    125 cats + 125 dogs, 10 trucks (outliers by content only: same size, sharpness, colour), and 20 edited
               copies of 20 of the cats and dogs (4 per edit: crop 80%, downscale to 60% of the side, JPEG q30, mirror,
               brightness ±25%)
    odd_size   the same, with the 10 outliers made small: a truck shrunk to 16 px and blown up to 48 px (odd size, blurry)
    quality    125 cats + 125 dogs and 2 images per quality issue (dark, light, blurry, low information, odd size,
               odd aspect ratio, grayscale), each made from a cat not otherwise in the folder

What is measured, per folder and tool (one JSON line each, then a table):

* duplicate recall: share of the 20 injected (original, copy) pairs among the tool's 40 most similar pairs (2N);
* outlier recall: share of the 10 outliers among its 20 most outlying images (2M); a tool with no outlier score is
  ranked by its worst quality score (cleanvision) or left out (imagededup);
* quality: how many of the 14 injected issues its checks flag, and how many clean images they flag;
* seconds: the subprocess's wall time (imports included; for sslcore the audit alone, its run's training apart).

sslcore is audited with a run trained on the folder itself (``--epochs``, 32 px, SimCLR convnet: the user's path)
and, with ``--run``, with an existing run (e.g. the 6-epoch CIFAR-10 run of ``audit_cifar.py train``, which never saw
the held-out images). With ``--init RUN`` it is also audited with a run trained on the folder that starts from RUN's
encoder (``sslcore train --init``: continued self-supervised pretraining, the route for a folder of a few hundred
images).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

EDIT_COPIES = 4          # per edit
OUTLIERS = 10
PER_CLASS = 125
QUALITY_CHECKS = ("dark", "light", "blurry", "low_information", "odd_size", "odd_aspect_ratio", "grayscale")
PER_ISSUE = 2
PEERS = ("fastdup", "cleanvision", "imagededup")


# ---------------------------------------------------------------------------------------------- folders


def upscale(picture, side):
    from PIL import Image

    return Image.fromarray(picture).resize((side, side), Image.Resampling.BICUBIC)


def quality_issue(image, check, rng):
    """``image`` (PIL, side × side) with one quality issue, as the tests' corpus makes them (tests/corpus.py)."""
    import numpy as np
    from PIL import Image, ImageFilter

    values = np.asarray(image, np.float32)
    side = image.size[0]
    if check == "dark":
        return Image.fromarray((values * 0.15).round().astype(np.uint8))
    if check == "light":
        return Image.fromarray((255 - (255 - values) * 0.15).round().astype(np.uint8))
    if check == "blurry":
        return image.filter(ImageFilter.GaussianBlur(side / 12))
    if check == "low_information":   # a blank scan: flat grey with a little noise
        return Image.fromarray(rng.normal(128, 2, values.shape).clip(0, 255).astype(np.uint8))
    if check == "odd_size":
        return image.resize((side // 4, side // 4), Image.Resampling.BOX)
    if check == "odd_aspect_ratio":  # two copies side by side with a gap: 2.5 : 1
        wide = np.zeros((side, side * 5 // 2, 3), np.uint8)
        wide[:, :side] = wide[:, -side:] = values.astype(np.uint8)
        return Image.fromarray(wide)
    if check == "grayscale":
        return image.convert("L")
    raise ValueError(check)


def build_folders(work: str, side: int, seed: int = 0) -> dict[str, dict]:
    """Write the three folders under ``work`` and return their ground truth {folder: {...}} (also truth.json); folders
    already built there (truth.json exists) are reused, so tools can be run one call at a time."""
    if os.path.exists(os.path.join(work, "truth.json")):
        with open(os.path.join(work, "truth.json")) as handle:
            return json.load(handle)
    import numpy as np
    from PIL import Image

    sys.path.insert(0, REPO)
    sys.path.insert(0, HERE)
    from audit_cifar import cifar
    from sslcore.audit import EDITS, apply_edit

    images, labels, classes, held_out = cifar()
    rng = np.random.default_rng(seed)
    pool = {name: rng.permutation(np.flatnonzero(held_out & (labels == classes.index(name))))
            for name in ("cat", "dog", "truck")}
    base = np.concatenate([pool["cat"][:PER_CLASS], pool["dog"][:PER_CLASS]])
    truths = {}
    for kind in ("content", "odd_size", "quality"):
        folder = os.path.join(work, kind)
        os.makedirs(folder, exist_ok=False)
        for index in base:
            upscale(images[index], side).save(os.path.join(folder, f"{classes[labels[index]]}_{index:05d}.png"))
        truth = {"folder": folder, "images": len(base), "pairs": [], "outliers": [], "issues": {}}
        if kind in ("content", "odd_size"):
            trucks = pool["truck"][:OUTLIERS] if kind == "content" else pool["truck"][OUTLIERS:2 * OUTLIERS]
            for index in trucks:
                name = f"truck_{index:05d}.png"
                if kind == "content":
                    picture = upscale(images[index], side)
                else:   # a small image blown up to an odd size
                    picture = Image.fromarray(images[index]).resize((16, 16), Image.Resampling.BOX).resize(
                        (48, 48), Image.Resampling.BICUBIC)
                picture.save(os.path.join(folder, name))
                truth["outliers"].append(name)
            originals = rng.choice(base, len(EDITS) * EDIT_COPIES, replace=False)
            for n, index in enumerate(originals):
                edit = EDITS[n // EDIT_COPIES]
                original = f"{classes[labels[index]]}_{index:05d}.png"
                big = np.asarray(upscale(images[index], side))
                if edit == "resize":    # a downscaled file: 60% of the side
                    copy, picture = f"copy_downscale_{n:02d}.png", Image.fromarray(big).resize(
                        (round(side * 0.6),) * 2, Image.Resampling.LANCZOS)
                    picture.save(os.path.join(folder, copy))
                elif edit == "jpeg":    # re-saved as JPEG at quality 30
                    copy = f"copy_jpeg_{n:02d}.jpg"
                    Image.fromarray(big).save(os.path.join(folder, copy), quality=30)
                else:
                    copy = f"copy_{edit}_{n:02d}.png"
                    Image.fromarray(apply_edit(big, edit, seed=n)).save(os.path.join(folder, copy))
                truth["pairs"].append([original, copy])
        else:
            makers = pool["cat"][PER_CLASS:PER_CLASS + len(QUALITY_CHECKS) * PER_ISSUE]
            for n, index in enumerate(makers):
                check = QUALITY_CHECKS[n // PER_ISSUE]
                name = f"issue_{check}_{n:02d}.png"
                quality_issue(upscale(images[index], side), check, rng).save(os.path.join(folder, name))
                truth["issues"][name] = check
        truth["images"] = len(os.listdir(folder))
        truths[kind] = truth
    with open(os.path.join(work, "truth.json"), "w") as handle:
        json.dump(truths, handle, indent=1)
    return truths


# ---------------------------------------------------------------------------------------------- peers (subprocess)
# Each returns {"pairs": [[a, b, similarity], ...] most similar first, "outliers": [name, ...] most outlying first
# (or None), "flags": {name: [issue, ...]}}, with file names relative to the folder.


def peer_fastdup(folder: str, scratch: str) -> dict:
    import fastdup

    fd = fastdup.create(work_dir=scratch, input_dir=folder)
    # threshold 0 and 10 neighbours: keep every image's 10 nearest, so pairs and outliers can be ranked in full.
    fd.run(overwrite=True, threshold=0.0, nearest_neighbors_k=10, ccthreshold=0.96, verbose=False)
    name = os.path.basename
    similarity = fd.similarity()
    pairs = {}
    for a, b, s in zip(similarity["filename_from"], similarity["filename_to"], similarity["distance"]):
        key = tuple(sorted((name(a), name(b))))
        if key[0] != key[1]:
            pairs[key] = max(float(s), pairs.get(key, -1.0))
    ranked = sorted(([a, b, s] for (a, b), s in pairs.items()), key=lambda p: -p[2])
    # fastdup's outlier score: similarity to the nearest other image, lowest first (fd.outliers() lists the lowest).
    nearest = {}
    for (a, b), s in pairs.items():
        for x in (a, b):
            nearest[x] = max(s, nearest.get(x, -1.0))
    outliers = sorted(nearest, key=lambda x: nearest[x])
    listed = fd.outliers()
    stats = fd.img_stats()
    flags: dict[str, list[str]] = {}
    columns = [c for c in ("blur", "mean", "stdv", "img_w", "img_h") if c in stats.columns]
    return {"pairs": ranked, "outliers": outliers,
            "outliers_listed": [name(x) for x in listed["filename_outlier"]] if "filename_outlier" in listed else [],
            "flags": flags, "stats": {name(f): {c: float(row[c]) for c in columns}
                                      for f, (_, row) in zip(stats["filename"], stats.iterrows())},
            "version": getattr(fastdup, "__version__", "?")}


def peer_cleanvision(folder: str, scratch: str) -> dict:
    import cleanvision
    from cleanvision import Imagelab

    lab = Imagelab(data_path=folder)
    lab.find_issues()
    issues = lab.issues
    name = os.path.basename
    types = [c[3:-6] for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]
    flags = {}
    for path, row in issues.iterrows():
        found = [t for t in types if row[f"is_{t}_issue"] and t not in ("exact_duplicates", "near_duplicates")]
        if found:
            flags[name(path)] = found
    # No outlier score: rank by how many of its checks flag an image, then by its worst (lowest) quality score,
    # which is how it finds odd images.
    scores = [c for c in issues.columns if c.endswith("_score") and "duplicates" not in c]
    flagged = issues[[f"is_{t}_issue" for t in types if "duplicates" not in t]].sum(axis=1)
    worst = issues[scores].min(axis=1)
    order = sorted(range(len(issues)), key=lambda i: (-int(flagged.iloc[i]), float(worst.iloc[i])))
    outliers = [name(issues.index[i]) for i in order]
    # Duplicates come as sets (hash-equal groups), unranked: every pair within a set, exact sets first.
    pairs = []
    for kind, similarity in (("exact_duplicates", 1.0), ("near_duplicates", 0.99)):
        for group in lab.info.get(kind, {}).get("sets", []):
            group = sorted(name(p) for p in group)
            pairs += [[a, b, similarity] for i, a in enumerate(group) for b in group[i + 1:]]
    return {"pairs": pairs, "outliers": outliers, "flags": flags, "version": cleanvision.__version__}


def peer_imagededup(folder: str, scratch: str) -> dict:
    import imagededup
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)
    encodings = hasher.encode_images(image_dir=folder)
    found = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=20, scores=True)
    pairs = {}
    for a, matches in found.items():
        for b, distance in matches:
            key = tuple(sorted((a, b)))
            pairs[key] = 1 - distance / 64   # Hamming distance of 64-bit hashes, as a similarity
    ranked = sorted(([a, b, s] for (a, b), s in pairs.items()), key=lambda p: -p[2])
    return {"pairs": ranked, "outliers": None, "flags": {}, "version": imagededup.__version__}


def peer_main(tool: str, folder: str, scratch: str, out: str) -> None:
    """In the peer interpreter: run one tool, write its rankings as JSON."""
    os.makedirs(scratch, exist_ok=True)
    result = {"fastdup": peer_fastdup, "cleanvision": peer_cleanvision, "imagededup": peer_imagededup}[tool](
        folder, scratch)
    with open(out, "w") as handle:
        json.dump(result, handle)


# ---------------------------------------------------------------------------------------------- sslcore (subprocess)


def train_run(folder: str, run: str, epochs: int, init: str | None = None) -> float:
    started = time.perf_counter()
    # From a start (--init), the run takes the start's encoder and image size.
    start = ["--init", init] if init else ["--image-size", "32"]
    subprocess.run([sys.executable, "-m", "sslcore", "train", "--data", f"folder:{folder}", "--epochs", str(epochs),
                    *start, "--out", run, "--no-progress"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def sslcore_audit(folder: str, run: str, out: str) -> dict:
    # --threshold 0.5 lists pairs down to 0.5, so that 40 can be ranked; the default (0.9) is reported apart.
    subprocess.run([sys.executable, "-m", "sslcore", "audit", "--run", run, "--data", f"folder:{folder}", "--out", out,
                    "--threshold", "0.5"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)

    def rows(name):
        with open(os.path.join(out, name), newline="") as handle:
            return list(csv.DictReader(handle))

    flags: dict[str, list[str]] = {}
    for row in rows("issues.csv"):
        flags.setdefault(row["path"], []).append(row["issue"])
    return {"pairs": [[r["a"], r["b"], float(r["similarity"])] for r in rows("duplicates.csv")],
            "outliers": [r["path"] for r in rows("outliers.csv")], "flags": flags}


# ---------------------------------------------------------------------------------------------- scoring


def score(truth: dict, result: dict) -> dict:
    injected = {tuple(sorted(p)) for p in truth["pairs"]}
    row = {}
    if injected:
        top = [tuple(sorted(p[:2])) for p in result["pairs"][:2 * len(injected)]]
        row["duplicate_recall"] = round(len(injected & set(top)) / len(injected), 3)
        at_default = {tuple(sorted(p[:2])) for p in result["pairs"] if p[2] >= 0.9}
        row["duplicates_at_0.9"] = len(injected & at_default)
    if truth["outliers"]:
        if result["outliers"] is None:
            row["outlier_recall"] = None
        else:
            top = set(result["outliers"][:2 * len(truth["outliers"])])
            row["outlier_recall"] = round(len(top & set(truth["outliers"])) / len(truth["outliers"]), 3)
    flags = result.get("flags", {})
    special = set(truth["outliers"]) | {c for _, c in truth["pairs"]} | set(truth["issues"])
    row["clean_flagged"] = sum(1 for name in flags if name not in special)
    if truth["issues"]:
        row["issues_flagged"] = sum(1 for name, check in truth["issues"].items() if check in flags.get(name, []))
        row["issues_flagged_any"] = sum(1 for name in truth["issues"] if flags.get(name))
        row["issues_flagged_by_check"] = {check: sum(1 for n, c in truth["issues"].items()
                                                     if c == check and check in flags.get(n, []))
                                          for check in QUALITY_CHECKS}
    if truth["outliers"]:
        row["outliers_flagged"] = sum(1 for name in truth["outliers"] if flags.get(name))
    return row


def fastdup_quality_by_rank(truth: dict, stats: dict) -> dict:
    """fastdup reports image statistics, not flags: an injected issue counts as found when it is among the
    PER_ISSUE most extreme images of the statistic its galleries sort by (blur, mean, stdv, size, aspect)."""
    if not stats:
        return {}
    keys = {"dark": lambda s: s["mean"], "light": lambda s: -s["mean"], "blurry": lambda s: s["blur"],
            "low_information": lambda s: s["stdv"], "odd_size": lambda s: s["img_w"] * s["img_h"],
            "odd_aspect_ratio": lambda s: -max(s["img_w"] / s["img_h"], s["img_h"] / s["img_w"])}
    found = {}
    for check, key in keys.items():
        worst = sorted(stats, key=lambda n: key(stats[n]))[:PER_ISSUE]
        found[check] = sum(1 for n in worst if truth["issues"].get(n) == check)
    return found


def run_tool(tool: str, folder: str, work: str, args) -> tuple[dict | None, float, str]:
    out = os.path.join(work, "results", f"{os.path.basename(folder)}-{tool}.json")
    scratch = os.path.join(work, "scratch", f"{os.path.basename(folder)}-{tool}")
    # Offline: fastdup's telemetry (Sentry) off by its documented switch, the Hub offline, and any other HTTP(S)
    # request sent to a closed local port, so it fails instead of leaving the machine.
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "SENTRY_OPT_OUT": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed,
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    started = time.perf_counter()
    done = subprocess.run([args.peer_python, os.path.abspath(__file__), "--peer", tool, folder, scratch, out],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return None, seconds, (done.stderr or done.stdout)[-2000:]
    with open(out) as handle:
        return json.load(handle), seconds, ""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", required=True, help="interpreter of a venv with fastdup, cleanvision, imagededup")
    parser.add_argument("--work", required=True, help="new folder for the image folders, runs and results")
    parser.add_argument("--run", help="also audit with this existing run (e.g. audit_cifar.py train's)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the run trained on each folder (0: none)")
    parser.add_argument("--init", help="also train a run on each folder that starts from this run's encoder "
                                       "(continued pretraining: sslcore train --init)")
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--tools", default="sslcore," + ",".join(PEERS))
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(os.path.join(work, "results"), exist_ok=True)
    truths = build_folders(work, args.side)
    tools = args.tools.split(",")
    lines = []
    for kind, truth in truths.items():
        folder = truth["folder"]
        jobs = []
        if "sslcore" in tools:
            if args.epochs:
                jobs.append((f"sslcore ({args.epochs}-epoch run on the folder)", "own"))
            if args.run:
                jobs.append(("sslcore (CIFAR-10 run)", args.run))
            if args.init and args.epochs:
                jobs.append((f"sslcore ({args.epochs}-epoch run on the folder from the CIFAR-10 run)", "init"))
        jobs += [(tool, None) for tool in PEERS if tool in tools]
        for tool, run in jobs:
            line = {"folder": kind, "tool": tool, "images": truth["images"]}
            if run is None:
                result, seconds, error = run_tool(tool, folder, work, args)
            else:
                if run in ("own", "init"):
                    init = args.init if run == "init" else None
                    run = os.path.join(work, "runs", kind + ("-init" if init else ""))
                    line["train_seconds"] = round(train_run(folder, run, args.epochs, init), 1)
                started = time.perf_counter()
                try:
                    out = os.path.join(work, "sslcore", f"{kind}-{os.path.basename(run) if run.startswith(work) else 'given'}-run")
                    result, error = sslcore_audit(folder, run, out), ""
                except subprocess.CalledProcessError as failed:
                    result, error = None, str(failed)
                seconds = time.perf_counter() - started
            line["seconds"] = round(seconds, 1)
            if result is None:
                line["error"] = error.strip().splitlines()[-1] if error.strip() else "failed"
                line["stderr_tail"] = error[-600:]
            else:
                line.update(score(truth, result))
                if "version" in result:
                    line["version"] = result["version"]
                if tool == "fastdup" and truth["issues"]:
                    line["issues_ranked_by_stats"] = fastdup_quality_by_rank(truth, result.get("stats", {}))
                if tool == "fastdup" and truth["outliers"]:
                    listed = result.get("outliers_listed", [])
                    line["fd_outliers_listed"] = len(listed)
                    line["fd_outliers_listed_recall"] = round(len(set(listed[:2 * OUTLIERS]) & set(truth["outliers"]))
                                                              / OUTLIERS, 3)
            print(json.dumps(line), flush=True)
            lines.append(line)
    print_table(lines)


def print_table(lines: list[dict]) -> None:
    def cell(value):
        return "–" if value is None else str(value)

    print("\n| folder | tool | duplicate recall, top 40 | outlier recall, top 20 | quality: injected issues flagged "
          "(of 14) / clean images flagged | seconds |")
    print("|---|---|---|---|---|---|")
    for line in lines:
        if "error" in line:
            print(f"| {line['folder']} | {line['tool']} | failed: {line['error'][:80]} | | | {line['seconds']} |")
            continue
        if "issues_flagged" in line:
            quality = f"{line['issues_flagged']} ({line['issues_flagged_any']} by any check) / {line['clean_flagged']}"
            if "issues_ranked_by_stats" in line:
                quality += (f"; no flags, its statistics rank {sum(line['issues_ranked_by_stats'].values())} of "
                            f"{len(line['issues_ranked_by_stats']) * PER_ISSUE} first")
        else:
            quality = f"– / {line['clean_flagged']}"
            if "outliers_flagged" in line:
                quality += f" (outliers flagged: {line['outliers_flagged']})"
        seconds = str(line["seconds"]) + (f" (+ {line['train_seconds']} training)" if "train_seconds" in line else "")
        print(f"| {line['folder']} | {line['tool']} | {cell(line.get('duplicate_recall'))} | "
              f"{cell(line.get('outlier_recall'))} | {quality} | {seconds} |")


if __name__ == "__main__":
    main()
