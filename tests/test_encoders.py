"""Every encoder builds and trains a step: one feature vector per image, at the sizes it supports."""
import numpy as np
import pytest

from sslcore.config import TrainConfig
from sslcore.data import Dataset
from sslcore.encoders import ENCODERS, MIN_IMAGE_SIZE, build_encoder
from sslcore.trainer import Trainer

pytestmark = pytest.mark.core


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_gives_one_feature_vector_per_image(name):
    size = max(32, MIN_IMAGE_SIZE[name])
    encoder = build_encoder(name, size)
    features = encoder(np.zeros((2, size, size, 3), np.float32))
    assert len(encoder.output.shape) == 2 and tuple(features.shape)[0] == 2


@pytest.mark.slow
def test_resnet50_trains_a_step():
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(16) % 2
    data = Dataset(name="random", train_images=images, train_labels=labels, test_images=images[:4],
                   test_labels=labels[:4], class_names=["a", "b"])
    config = TrainConfig(encoder="resnet50", image_size=32, batch_size=8, epochs=1, knn_bank_size=4, eval_size=4)
    summary = Trainer(config, dataset=data).fit(max_steps=1)
    assert summary["global_step"] == 1 and summary["state"] == "stopped"
