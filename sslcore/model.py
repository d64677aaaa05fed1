"""The shared self-supervised model: augment twice → encode → method's loss, plus an online linear probe.

One class for every method (the template-method shape of the seeds' ``ContrastiveModel``): the method
supplies its loss and any momentum state; augmentation, the probe and the metrics live here, once.
``train_losses`` is pure ``keras.ops`` so each backend's compiled train step (``sslcore.steps``) can
call it unchanged.
"""
from __future__ import annotations

import contextlib

import keras
from keras import ops

from sslcore import losses
from sslcore.augment import Augmenter
from sslcore.encoders import build_encoder
from sslcore.heads import linear_probe
from sslcore.methods import method_class

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Layers take their dtype policy when they are built: build the model under the run's precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class SSLModel(keras.Model):
    def __init__(self, *, method: str, method_params, encoder: str, image_size: int, encoder_width: int | None,
                 augment, probe_augment=None, num_classes: int = 0, seed: int = 0, precision: str = "fp32", **kwargs):
        super().__init__(name="ssl_model", **kwargs)
        with dtype_policy(precision):
            self.augmenter = Augmenter(augment, seed=seed, name="augmenter")
            self.probe_augmenter = Augmenter(probe_augment, seed=seed + 1, name="probe_augmenter") if probe_augment else None
            self.encoder = build_encoder(encoder, image_size, encoder_width)
            self.feature_dim = int(self.encoder.output.shape[-1])
            self.method = method_class(method)(method_params, self.feature_dim, self.encoder)
            self.linear_probe = linear_probe(self.feature_dim, num_classes) if num_classes > 1 else None

    def train_losses(self, images, labels=None, probe_images=None, probe_labels=None):
        """Total loss (the method's + the probe's) and a dict of scalar metrics, for one batch of uint8 images.

        The probe learns from the first view's features when the pretraining images carry labels (free:
        the features are already computed); when they don't but a separate labelled pool exists (STL-10's
        unlabelled + train splits), it learns from a weakly augmented labelled batch instead.
        """
        x = ops.cast(images, "float32") / 255.0
        view1 = self.augmenter(x, training=True)
        view2 = self.augmenter(x, training=True)
        out = self.method.compute(self.encoder, view1, view2, training=True)
        loss = ops.cast(out.loss, "float32")
        metrics = {
            "loss": loss,
            "contrastive_accuracy": losses.contrastive_accuracy(out.z1, out.z2),
            "collapse_std": losses.collapse_std(out.z1),
        }
        total = loss
        if self.linear_probe is not None and (labels is not None or probe_labels is not None):
            if probe_labels is not None:
                probe_view = self.probe_augmenter(ops.cast(probe_images, "float32") / 255.0, training=True)
                features, targets = self.encoder(probe_view, training=False), probe_labels
            else:
                features, targets = out.features, labels
            logits = ops.cast(self.linear_probe(ops.stop_gradient(features), training=True), "float32")
            probe_loss = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
            predicted = ops.cast(ops.argmax(logits, axis=1), "int32")
            metrics["probe_loss"] = probe_loss
            metrics["train_probe_accuracy"] = ops.mean(ops.cast(ops.equal(predicted, ops.cast(targets, "int32")), "float32"))
            total = total + probe_loss
        return total, metrics

    def feature_extractor(self) -> keras.Model:
        """Encoder that takes RGB pixels 0–255 at the run's image size: what ``encoder.keras`` holds."""
        return pixel_encoder(self.encoder)

    def classifier(self) -> keras.Model | None:
        """Encoder + linear probe + softmax, taking pixels 0–255: what ``classifier.keras`` holds."""
        if self.linear_probe is None:
            return None
        extractor = self.feature_extractor()
        logits = self.linear_probe(extractor.output, training=False)
        probabilities = keras.layers.Softmax(dtype="float32", name="probabilities")(logits)
        return keras.Model(extractor.input, probabilities, name="classifier")


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` rebuilt with every layer in float32, holding the same weights: what a mixed-precision run exports, so
    the saved model computes in full precision wherever it is loaded (bf16 is slow on a CPU without AMX, and its
    rounding differs between backends). A float32 model is returned as it is."""
    config = keras.saving.serialize_keras_object(model)
    in_float32 = _in_float32(config)
    if in_float32 == config:
        return model
    copy = keras.saving.deserialize_keras_object(in_float32)
    copy.set_weights(model.get_weights())
    return copy


def _in_float32(value):
    if isinstance(value, dict):
        return {key: _in_float32(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_float32(item) for item in value]
    return "float32" if value in MIXED_POLICIES else value


def pixel_encoder(encoder: keras.Model) -> keras.Model:
    """``encoder`` (float images in [0, 1]) taking RGB pixels 0–255 at its image size: what ``encoder.keras`` holds."""
    size = encoder.input.shape[1]
    inputs = keras.Input((size, size, 3), name="pixels")
    features = encoder(keras.layers.Rescaling(1 / 255.0, name="to_unit_range")(inputs), training=False)
    return keras.Model(inputs, ops.cast(features, "float32"), name="encoder")
