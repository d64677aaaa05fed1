"""Throughput of the full train step (augmentation, encoder, method, online probe, metrics), after compiling.

Uses the trainer's own step on random uint8 images held in memory (like ``../shared/anchors``), so the
figure is the trainer's, not a stripped-down copy. Counts source images per second (each yields two views).
"""
from __future__ import annotations

import os
import platform
import time

import keras
import numpy as np

from sslcore.config import TrainConfig
from sslcore.data import Dataset
from sslcore.steps import DeviceData, make_train_step, to_host
from sslcore.trainer import Trainer


# The anchors' SimCLR head (../shared/anchors): speed comparisons with them use it whatever SimCLR's defaults are.
ANCHOR_SIMCLR_PARAMS = {"hidden_dim": 128, "temperature": 0.1}


def synthetic_dataset(image_size: int, num_images: int = 10000, num_classes: int = 10, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_images, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_images).astype("int32")
    return Dataset(name="synthetic", train_images=images, train_labels=labels, test_images=images[:512],
                   test_labels=labels[:512], class_names=[str(i) for i in range(num_classes)])


def device_name() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return str(jax.devices()[0])
    if backend == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else f"cpu ({os.cpu_count()} cores)"
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"


def run_benchmark(config: TrainConfig, steps: int = 50, warmup_steps: int = 3, num_images: int = 10000) -> dict:
    trainer = Trainer(config, dataset=synthetic_dataset(config.image_size, max(num_images, config.batch_size or 0)))
    compile_started = time.perf_counter()
    trainer.prepare()
    config, data = trainer.config, trainer.dataset   # the batch size resolved for the data
    step = make_train_step(trainer.model, trainer.optimizer, DeviceData.from_numpy(data.train_images, data.train_labels),
                           config.jit_compile)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(data.train_images), config.batch_size).astype("int32") for _ in range(warmup_steps + steps)]
    for indices in batches[:warmup_steps]:
        to_host(step(indices))
    compile_seconds = time.perf_counter() - compile_started
    started = time.perf_counter()
    metrics = None
    for indices in batches[warmup_steps:]:
        metrics = step(indices)
    final = to_host(metrics)  # one sync at the end, as in the bare loops
    seconds = time.perf_counter() - started
    return {"images_per_second": round(steps * config.batch_size / seconds, 1), "seconds": round(seconds, 3),
            "steps": steps, "batch_size": config.batch_size, "image_size": config.image_size, "method": config.method,
            "encoder": config.encoder, "precision": config.precision, "backend": keras.backend.backend(),
            "device": device_name(), "warmup_seconds": round(compile_seconds, 2), "loss": round(final["loss"], 4),
            "python": platform.python_version(), "keras": keras.__version__}
