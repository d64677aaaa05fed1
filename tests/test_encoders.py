"""Every encoder builds and trains a step: one feature vector per image, at the sizes it supports."""
import numpy as np
import pytest

from sslcore.config import TrainConfig
from sslcore.data import Dataset
from sslcore.encoders import ENCODERS, MIN_IMAGE_SIZE, build_encoder
from sslcore.trainer import Trainer

pytestmark = pytest.mark.core


# The feature width each encoder promises: the convnet's is its width, ResNet-18's 8 × its first stage's width,
# ResNet-50's fixed at 2048.
FEATURE_WIDTH = {("convnet", None): 128, ("convnet", 16): 16, ("resnet18", None): 512, ("resnet18", 8): 64,
                 ("resnet50", None): 2048}


@pytest.mark.parametrize("name, width", sorted(FEATURE_WIDTH, key=str))
def test_encoder_gives_one_feature_vector_per_image(name, width):
    size = max(32, MIN_IMAGE_SIZE[name])
    encoder = build_encoder(name, size, width)
    features = encoder(np.zeros((2, size, size, 3), np.float32))
    assert tuple(encoder.output.shape) == (None, FEATURE_WIDTH[name, width])
    assert tuple(features.shape) == (2, FEATURE_WIDTH[name, width])


def test_every_encoder_has_a_width_check():
    assert {name for name, _ in FEATURE_WIDTH} == set(ENCODERS)


@pytest.mark.slow
def test_resnet50_trains_a_step():
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(16) % 2
    data = Dataset(name="random", train_images=images, train_labels=labels, test_images=images[:4],
                   test_labels=labels[:4], class_names=["a", "b"])
    config = TrainConfig(encoder="resnet50", image_size=32, batch_size=8, epochs=1, knn_bank_size=4, eval_size=4)
    summary = Trainer(config, dataset=data).fit(max_steps=1)
    assert summary["global_step"] == 1 and summary["state"] == "stopped"
