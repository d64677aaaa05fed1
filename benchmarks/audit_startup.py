"""Where a small folder's ``sslcore audit`` spends its seconds, per Keras backend (``docs/audit.md``, "Seconds").

    audit_startup.py RUN [--folder FOLDER] [--images 20000] [--backends tensorflow,jax]

For each backend, in a fresh subprocess: importing Keras and sslcore's audit, loading RUN's encoder, the first
``predict`` of 256 images (tracing / compiling), then embedding throughput on ``--images`` random 32 px images (a
50,000-image folder's cost). With ``--folder``, also the wall time of the whole ``python -m sslcore audit`` of that
folder with RUN. One JSON line per backend; compare backends within one invocation (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import json, sys, time
started = time.perf_counter()
import numpy as np
import keras
from sslcore import audit  # noqa: F401  (the audit's own imports: scikit-learn, PIL)
from sslcore.run import embed_with, load_model_file
imported = time.perf_counter()
model = load_model_file(sys.argv[1] + "/encoder.keras")
loaded = time.perf_counter()
images = np.random.default_rng(0).integers(0, 256, (int(sys.argv[2]), 32, 32, 3), dtype=np.uint8)
embed_with(model, images[:256])
first = time.perf_counter()
embed_with(model, images)
done = time.perf_counter()
print(json.dumps({"backend": keras.backend.backend(), "import_s": round(imported - started, 2),
                  "load_encoder_s": round(loaded - imported, 2), "first_predict_s": round(first - loaded, 2),
                  "embed_images_per_s": round(len(images) / (done - first))}))
"""


def probe(backend: str, run: str, images: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-c", PROBE, run, str(images)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def audit_seconds(backend: str, run: str, folder: str) -> float:
    env = {**os.environ, "KERAS_BACKEND": backend}
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sslcore", "audit", "--run", run, "--data", f"folder:{folder}",
                        "--out", out], env=env, cwd=REPO, capture_output=True, check=True)
        return round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished 32 px run folder")
    parser.add_argument("--folder", help="also time the whole `sslcore audit` of this folder")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--backends", default="tensorflow,jax")
    args = parser.parse_args()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_s = time.perf_counter() - started
    for backend in args.backends.split(","):
        line = {"python_start_s": round(python_s, 2), **probe(backend, args.run, args.images)}
        if args.folder:
            line["audit_folder_s"] = audit_seconds(backend, args.run, args.folder)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
