"""``train --init hf://timm/resnet18...``: a timm checkpoint on the Hub as the start of a run.

The checkpoint is a small random one in timm's real format (config.json with ``architecture`` and ``pretrained_cfg``,
PyTorch's state-dict names in ``model.safetensors``), served by the fake Hub. What it must compute is computed
independently, by PyTorch's own convolution, batch norm and pooling on the same tensors (torchvision's and timm's
ResNet-18 forward pass, written out), so a wrong transpose, padding, epsilon or normalisation fails here.
"""
import json

import numpy as np
import pytest

from sslcore import cli, pretrained
from sslcore.trainer import Trainer
from tests.helpers import tiny_config
from tests.test_init import fake_hub  # noqa: F401 - the fake Hub as HF_ENDPOINT (a fixture)

torch = pytest.importorskip("torch")   # the test command installs it (requirements-torch-cpu.txt)
F = torch.nn.functional

WIDTH, SIZE = 16, 72          # a narrow network at a size just above the CIFAR stem's 64 px
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def random_checkpoint(width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """timm's resnet18 state dict, random: convolutions (out, in, kh, kw), batch norms with statistics, the head."""
    rng = np.random.default_rng(seed)
    tensors = {}

    def conv(name, out, into, kernel):
        tensors[f"{name}.weight"] = rng.normal(0, (2 / (into * kernel * kernel)) ** 0.5,
                                               (out, into, kernel, kernel)).astype("float32")

    def norm(name, channels):
        tensors[f"{name}.weight"] = rng.uniform(0.5, 1.5, channels).astype("float32")
        tensors[f"{name}.bias"] = rng.normal(0, 0.1, channels).astype("float32")
        tensors[f"{name}.running_mean"] = rng.normal(0, 0.2, channels).astype("float32")
        tensors[f"{name}.running_var"] = rng.uniform(0.5, 2.0, channels).astype("float32")
        tensors[f"{name}.num_batches_tracked"] = np.array(1000, dtype="int64")

    conv("conv1", width, 3, 7)
    norm("bn1", width)
    into = width
    for stage in range(1, 5):
        channels = width * 2 ** (stage - 1)
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            conv(f"{prefix}.conv1", channels, into, 3)
            norm(f"{prefix}.bn1", channels)
            conv(f"{prefix}.conv2", channels, channels, 3)
            norm(f"{prefix}.bn2", channels)
            if stage > 1 and block == 0:
                conv(f"{prefix}.downsample.0", channels, into, 1)
                norm(f"{prefix}.downsample.1", channels)
            into = channels
    tensors["fc.weight"] = rng.normal(0, 0.01, (1000, into)).astype("float32")
    tensors["fc.bias"] = np.zeros(1000, "float32")
    return tensors


def timm_config(architecture="resnet18", size=SIZE, mean=MEAN, std=STD) -> bytes:
    return json.dumps({"architecture": architecture, "num_classes": 1000, "num_features": 8 * WIDTH,
                       "pretrained_cfg": {"tag": "test_in1k", "input_size": [3, size, size], "mean": mean,
                                          "std": std, "first_conv": "conv1", "classifier": "fc"}}).encode()


def reference_features(tensors: dict[str, np.ndarray], pixels: np.ndarray) -> np.ndarray:
    """timm's resnet18 forward pass in PyTorch (eval mode), on pixels 0–255 (N, H, W, 3): the pooled features."""
    t = {key: torch.from_numpy(value) for key, value in tensors.items()}

    def bn(x, name):
        return F.batch_norm(x, t[f"{name}.running_mean"], t[f"{name}.running_var"], t[f"{name}.weight"],
                            t[f"{name}.bias"], training=False, eps=1e-5)

    x = torch.from_numpy(pixels.astype("float32") / 255).permute(0, 3, 1, 2)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    x = F.relu(bn(F.conv2d(x, t["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage in range(1, 5):
        for block in range(2):
            prefix, stride = f"layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
            y = F.relu(bn(F.conv2d(x, t[f"{prefix}.conv1.weight"], stride=stride, padding=1), f"{prefix}.bn1"))
            y = bn(F.conv2d(y, t[f"{prefix}.conv2.weight"], padding=1), f"{prefix}.bn2")
            if f"{prefix}.downsample.0.weight" in t:
                x = bn(F.conv2d(x, t[f"{prefix}.downsample.0.weight"], stride=stride), f"{prefix}.downsample.1")
            x = F.relu(y + x)
    return x.mean(dim=(2, 3)).numpy()


@pytest.fixture(scope="module")
def timm_start(fake_hub):  # noqa: F811 - the fixture imported above
    from safetensors.numpy import save as to_safetensors

    tensors = random_checkpoint(WIDTH)
    fake_hub.add_repo("timm/resnet18.test_in1k", {
        "config.json": timm_config(), "model.safetensors": to_safetensors(tensors),
        "pytorch_model.bin": b"the same weights as PyTorch pickles them: never downloaded", "README.md": b"# timm"})
    return "hf://timm/resnet18.test_in1k", tensors


@pytest.mark.core   # padding and normalisation are each backend's own kernels
def test_a_timm_checkpoint_computes_what_timm_computes(timm_start):
    source, tensors = timm_start
    start = pretrained.resolve(source)
    assert start.architecture == {"encoder": "resnet18", "encoder_width": WIDTH, "image_size": SIZE}
    pixels = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3)).astype("uint8")
    ours = np.asarray(start.model.predict(pixels, verbose=0))
    theirs = reference_features(tensors, pixels)
    assert ours.shape == theirs.shape == (3, 8 * WIDTH)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_a_run_starts_from_it_at_any_size_above_the_cifar_stem(timm_start, fake_hub, tmp_path, capsys):  # noqa: F811
    source, _ = timm_start
    start = pretrained.resolve(source)
    settings = dict(epochs=1, encoder="resnet18", encoder_width=None, image_size=SIZE, init=source)
    trainer = Trainer(tiny_config(**settings), init_source=start)
    trainer.prepare()
    assert trainer.config.encoder_width == WIDTH   # the checkpoint's
    for ours, theirs in zip(trainer.model.encoder.weights, pretrained._inner_encoder(start.model, source).weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))

    larger = Trainer(tiny_config(**{**settings, "image_size": 96}), init_source=start)
    larger.prepare()   # the same weights fit a larger image
    assert larger.config.image_size == 96 and larger.model.encoder.input.shape[1] == 96
    with pytest.raises(pretrained.InitMismatch, match="image_size 32 \\(the source's weights need at least 65 px\\)"):
        Trainer(tiny_config(**{**settings, "image_size": 32}), init_source=start).prepare()

    out = tmp_path / "from-timm"
    assert cli.main(["train", "--init", source, "--epochs", "1", "--batch-size", "16", "--max-steps", "1",
                     "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    recorded = json.loads((out / "config.json").read_text())
    commit = fake_hub.repos["timm/resnet18.test_in1k"].head
    # Left unset, the architecture and the image size are the checkpoint's (its pretrained_cfg's input size).
    assert recorded["encoder"] == "resnet18" and recorded["image_size"] == SIZE
    assert recorded["init_source"] == {"source": source, "revision": commit, "encoder": "resnet18",
                                       "encoder_width": WIDTH, "image_size": SIZE, "timm_architecture": "resnet18",
                                       "timm_tag": "test_in1k"}
    assert not any("pytorch_model.bin" in path for _, path, _ in fake_hub.routes_called())   # only what is used


@pytest.mark.parametrize("config, message", [
    (timm_config(architecture="vit_base_patch16_224"), "a timm 'vit_base_patch16_224' checkpoint; sslcore can start "
                                                       "from timm's resnet18"),
    (timm_config(mean=[0.5] * 3, std=[0.5] * 3), "normalised with mean \\[0.5, 0.5, 0.5\\]"),
])
def test_a_checkpoint_sslcore_cannot_map_is_refused_by_name(fake_hub, config, message, tmp_path, capsys):  # noqa: F811
    from safetensors.numpy import save as to_safetensors

    name = f"timm/other-{abs(hash(config)) % 10**6}"
    fake_hub.add_repo(name, {"config.json": config, "model.safetensors": to_safetensors(random_checkpoint(4))})
    with pytest.raises(ValueError, match=message):
        pretrained.resolve(f"hf://{name}")
    out = tmp_path / "run"
    assert cli.main(["train", "--init", f"hf://{name}", "--out", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and "sslcore" in error and not out.exists()
