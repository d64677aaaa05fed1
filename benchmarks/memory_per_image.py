"""Memory one more image in the batch costs a training step, per encoder and resolution (docs/benchmarks.md).

    python benchmarks/memory_per_image.py [--encoders convnet,resnet18,resnet50] [--sizes 32,64,96] [--batches 16,48]

For every (encoder, size) and each batch size, a fresh process builds the full trainer (SimCLR, online probe) on
random uint8 images and trains two steps; its peak resident memory is read from ``getrusage``. The slope between the
two batch sizes is the memory per image of the step (both views' activations, their gradients, the probe), the
intercept what the step costs before any image (weights, optimizer state, the framework). Measured on the host
with the CPU build of the backend in ``KERAS_BACKEND``: an accelerator's allocator differs, so read the figures as
the scale of each setting, not as a GPU's exact bytes. One JSON line per setting.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONE_SETTING = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from sslcore.config import TrainConfig
from sslcore.data import Dataset
from sslcore.trainer import Trainer
encoder, size, batch = {encoder!r}, {size}, {batch}
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (batch * 2, size, size, 3), dtype=np.uint8)
labels = np.arange(batch * 2) % 10
data = Dataset(name="random", train_images=images, train_labels=labels, test_images=images[:20], test_labels=labels[:20],
               class_names=[str(i) for i in range(10)])
config = TrainConfig(encoder=encoder, image_size=size, batch_size=batch, epochs=1, knn_bank_size=20, eval_size=20)
trainer = Trainer(config, dataset=data)
trainer.fit(max_steps=2)
params = sum(int(np.prod(v.shape)) for v in trainer.model.encoder.weights)
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "encoder_parameters": params}}))
"""


def measure(encoder: str, size: int, batch: int) -> dict:
    script = ONE_SETTING.format(root=ROOT, encoder=encoder, size=size, batch=batch)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{encoder} at {size} px, batch {batch}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", default="convnet,resnet18,resnet50")
    parser.add_argument("--sizes", default="32,64,96")
    parser.add_argument("--batches", default="16,48")
    args = parser.parse_args()
    small, large = (int(b) for b in args.batches.split(","))
    for encoder in args.encoders.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            low, high = measure(encoder, size, small), measure(encoder, size, large)
            per_image = (high["peak_mb"] - low["peak_mb"]) / (large - small)
            print(json.dumps({"encoder": encoder, "image_size": size, "backend": os.environ.get("KERAS_BACKEND"),
                              "batches": [small, large], "peak_mb": [round(low["peak_mb"]), round(high["peak_mb"])],
                              "mb_per_image": round(per_image, 2), "fixed_mb": round(low["peak_mb"] - small * per_image),
                              "encoder_parameters": low["encoder_parameters"]}), flush=True)


if __name__ == "__main__":
    main()
