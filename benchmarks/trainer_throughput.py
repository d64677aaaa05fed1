"""Sustained throughput of the full trainer (``Trainer.fit``: probe, metrics, host reads, checkpoints)
on random uint8 images, as the anchors measure it. Prints one JSON line.

Usage: KERAS_BACKEND=... trainer_throughput.py IMAGES BATCH EPOCHS [METHOD] [IMAGE_SIZE]
The first epoch includes compilation; the figure is the mean of the later epochs' images/s (train time,
excluding the per-epoch kNN evaluation, which is reported apart).
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from sslcore.bench import ANCHOR_SIMCLR_PARAMS, synthetic_dataset  # noqa: E402
from sslcore.config import TrainConfig  # noqa: E402
from sslcore.trainer import Trainer  # noqa: E402


def main(images: int, batch: int, epochs: int, method: str = "simclr", image_size: int = 32):
    method_params = ANCHOR_SIMCLR_PARAMS if method == "simclr" else {}
    config = TrainConfig(method=method, method_params=method_params, image_size=image_size, batch_size=batch,
                         epochs=epochs, knn_bank_size=2000, eval_size=1000)
    dataset = synthetic_dataset(image_size, images)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, folder, dataset=dataset)
        trainer.fit()
        rows = trainer.run.epochs()
    later = rows[1:] or rows
    print(json.dumps({"script": "trainer_throughput.py", "backend": keras.backend.backend(), "method": method,
                      "images": images, "batch": batch, "epochs": epochs,
                      "images_per_second": round(sum(r["images_per_second"] for r in later) / len(later), 1),
                      "per_epoch": [round(r["images_per_second"], 1) for r in rows],
                      "eval_seconds_per_epoch": round(sum(r["eval_seconds"] for r in rows) / len(rows), 2)}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), *(sys.argv[4:5] or []),
         *([int(sys.argv[5])] if len(sys.argv) > 5 else []))
