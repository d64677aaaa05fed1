"""The preview's views are the trainer's views, however the preview computes them."""
import numpy as np
import pytest

import sslcore  # noqa: F401  (chooses the Keras backend before keras is imported)
import keras

from sslcore import preview
from sslcore.augment import PRESETS, Augmenter

pytestmark = pytest.mark.core


def eager_views(images, config, draws, seed):
    batch = np.tile(images.astype("float32") / 255.0, (draws, 1, 1, 1))
    pixels = keras.ops.convert_to_numpy(Augmenter(config, seed=seed)(batch, training=True)) * 255.0
    return np.rint(np.clip(pixels, 0, 255)).astype(np.uint8).reshape((draws,) + images.shape)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_views_equal_a_fresh_augmenter_with_that_seed(name):
    images = preview.sample_images("digits", 32, 3, seed=2)
    for seed in (0, 7, 7, 123):      # a repeated seed: the shared generator is re-seeded, not advanced
        drawn = preview.views(images, name, draws=2, seed=seed)
        difference = np.abs(drawn.astype(int) - eager_views(images, name, 2, seed).astype(int))
        assert difference.max() <= 1, f"{name}, seed {seed}: views differ from Augmenter's by {difference.max()}"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the traced path is TensorFlow's")
def test_presets_run_as_a_traced_graph_on_tensorflow(monkeypatch):
    images = preview.sample_images("digits", 32, 2, seed=0)
    preview.views(images, "strong", draws=2, seed=1)          # traced (or already) before Augmenter is removed

    def no_eager(*args, **kwargs):
        raise AssertionError("a preset went through an eager Augmenter")

    monkeypatch.setattr(preview, "Augmenter", no_eager)
    for name in PRESETS:
        assert preview.views(images, name, draws=2, seed=3).shape == (2,) + images.shape
    custom = {**PRESETS["strong"].to_dict(), "blur_prob": 0.123}
    with pytest.raises(AssertionError, match="eager"):     # other settings stay eager (no trace per slider step)
        preview.views(images, custom, draws=2, seed=3)
