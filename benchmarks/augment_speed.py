"""Images/s of sslcore's Augmenter against the seeds' Keras preprocessing stack, on the current backend.

    KERAS_BACKEND=jax        taskset -c 0,1 .venv/bin/python benchmarks/augment_speed.py
    KERAS_BACKEND=tensorflow taskset -c 0,1 .venv/bin/python benchmarks/augment_speed.py

The seeds' augmentation is RandomFlip + RandomTranslation + RandomZoom (+ their RandomColorAffine).
RandomTranslation / RandomZoom report supports_jit=False, so on TensorFlow that stack can only run in a
plain tf.function; on JAX everything goes through jax.jit(stateless_call), as model.fit would do.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sslcore  # noqa: E402,F401  (chooses the backend)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from sslcore.augment import Augmenter, augment_config  # noqa: E402


class SeedsRandomColorAffine(layers.Layer):
    """The seeds' colour layer (keras.io SimCLR example), for a like-for-like baseline."""

    def __init__(self, brightness=0.0, jitter=0.0, **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.jitter = brightness, jitter
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, images, training=True):
        if not training:
            return images
        batch_size = ops.shape(images)[0]
        scales = 1 + keras.random.uniform((batch_size, 1, 1, 1), -self.brightness, self.brightness, seed=self.seed_generator)
        jitters = keras.random.uniform((batch_size, 1, 3, 3), -self.jitter, self.jitter, seed=self.seed_generator)
        transforms = ops.tile(ops.expand_dims(ops.eye(3), axis=0), (batch_size, 1, 1, 1)) * scales + jitters
        return ops.clip(ops.matmul(images, transforms), 0, 1)


def seeds_stack(min_area=0.25, brightness=0.6, jitter=0.2):
    """The seeds' contrastive augmentation (``strong``) built from Keras preprocessing layers."""
    zoom = 1.0 - math.sqrt(min_area)
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomTranslation(zoom / 2, zoom / 2),
            layers.RandomZoom((-zoom, 0.0), (-zoom, 0.0)),
            SeedsRandomColorAffine(brightness, jitter),
        ]
    )


def compiled_view_fn(layer, images, xla: bool):
    """A function images -> augmented images that advances the layer's random state each call."""
    layer(images[:2])  # build
    if keras.backend.backend() == "jax":
        import jax

        state = [variable.value for variable in layer.non_trainable_variables]
        step = jax.jit(lambda state, batch: layer.stateless_call([], state, batch, training=True))

        def view(batch):
            nonlocal state
            out, state = step(state, batch)
            return out.block_until_ready()

        return view
    import tensorflow as tf

    step = tf.function(lambda batch: layer(batch, training=True), jit_compile=xla)
    return lambda batch: step(batch).numpy()


def images_per_second(view, images, repeats: int) -> float:
    for _ in range(3):
        view(images)
    start = time.perf_counter()
    for _ in range(repeats):
        view(images)
    return repeats * len(images) / (time.perf_counter() - start)


def candidates():
    yield "seeds Keras stack (flip+translate+zoom+colour affine)", seeds_stack(), False
    for preset, overrides in (("strong", {}), ("simclr", {}), ("simclr", {"blur_prob": 0.5})):
        name = f"sslcore Augmenter {preset}" + (" +blur" if overrides else "")
        if keras.backend.backend() == "tensorflow":
            yield name + " (tf.function)", Augmenter(augment_config(preset, **overrides), seed=0), False
        yield name, Augmenter(augment_config(preset, **overrides), seed=0), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    images = np.random.default_rng(0).uniform(0, 1, (args.batch, args.size, args.size, 3)).astype("float32")
    compiler = "jax.jit" if keras.backend.backend() == "jax" else "tf.function"
    print(f"backend={keras.backend.backend()} batch={args.batch} size={args.size} cpus={len(os.sched_getaffinity(0))}")
    for name, layer, xla in candidates():
        how = compiler + (" jit_compile=True" if xla and compiler == "tf.function" else "")
        rate = images_per_second(compiled_view_fn(layer, images, xla), images, args.repeats)
        print(f"{rate:>10,.0f} img/s  {name}  [{how}]")


if __name__ == "__main__":
    main()
