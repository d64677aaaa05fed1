"""Image encoders: the network whose features self-supervised learning is for.

Every encoder takes float RGB images in [0, 1], channels last, and returns one feature vector per image.
``build_encoder(name, image_size, width)`` is the one entry point; ``ENCODERS`` lists the names.
"""
from __future__ import annotations

import keras
from keras import layers


def convnet(image_size: int, width: int = 128) -> keras.Model:
    """The seeds' encoder (keras.io semi-supervised SimCLR): 4 × Conv2D(width, 3, stride 2, relu) + Dense(width).

    Small enough to train on a CPU in minutes, which is why it is the default.
    """
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = inputs
    for index in range(4):
        x = layers.Conv2D(width, 3, strides=2, activation="relu", name=f"conv{index + 1}")(x)
    x = layers.Flatten()(x)
    features = layers.Dense(width, activation="relu", name="features")(x)
    return keras.Model(inputs, features, name="convnet")


# torchvision's and timm's ResNet conventions, kept so that their pretrained weights (sslcore.timm_weights) compute
# here what they compute there: inputs normalised by ImageNet's channel statistics, batch-norm epsilon 1e-5, and
# symmetric padding on strided convolutions (Keras "same" pads (0, 1) at stride 2, which shifts the sampling grid
# by a pixel and, in a block, misaligns the main path with its 1×1 projected shortcut).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_EPSILON = 1e-5


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn_name: str):
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=bn_name)(x)


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet-18's block: two 3×3 convs with batch norm, and a projected shortcut when the shape changes."""
    shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_conv1", f"{name}_bn1")
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv_bn(y, filters, 3, 1, f"{name}_conv2", f"{name}_bn2")
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_proj", f"{name}_proj_bn")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet18(image_size: int, width: int = 64) -> keras.Model:
    """ResNet-18 (He et al. 2016), laid out as torchvision's and timm's. Inputs of 64 px or less get the CIFAR stem
    (3×3 conv, stride 1, no max-pool), as the peers' CIFAR-10 benchmarks do: the ImageNet stem would shrink 32 px to
    8 px at once. ``width`` is the first stage's channel count (64 in the paper); output is 8 × width features.
    """
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = layers.Rescaling([1 / std for std in IMAGENET_STD], [-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD)],
                         name="imagenet_normalise")(inputs)
    if image_size <= 64:
        x = layers.ReLU(name="stem_relu")(_conv_bn(x, width, 3, 1, "stem_conv", "stem_bn"))
    else:
        x = layers.ReLU(name="stem_relu")(_conv_bn(x, width, 7, 2, "stem_conv", "stem_bn"))
        # Zeros pad like PyTorch's -inf here: the input is past a ReLU, so never below 0.
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, multiplier in enumerate((1, 2, 4, 8)):
        stride = 1 if stage == 0 else 2
        x = _basic_block(x, width * multiplier, stride, f"stage{stage + 1}_block1")
        x = _basic_block(x, width * multiplier, 1, f"stage{stage + 1}_block2")
    features = layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, features, name="resnet18")


def resnet50(image_size: int, width: int = 64) -> keras.Model:
    """keras.applications' ResNet-50, randomly initialised (self-supervised learning trains it from scratch).

    ``width`` is fixed by the architecture and ignored.
    """
    del width
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(image_size, image_size, 3), pooling="avg")
    return keras.Model(backbone.input, backbone.output, name="resnet50")   # one tensor: .outputs is a list


ENCODERS = {"convnet": convnet, "resnet18": resnet18, "resnet50": resnet50}
DEFAULT_WIDTH = {"convnet": 128, "resnet18": 64, "resnet50": 64}
MIN_IMAGE_SIZE = {"convnet": 32, "resnet18": 8, "resnet50": 32}


def build_encoder(name: str, image_size: int, width: int | None = None) -> keras.Model:
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    if image_size < MIN_IMAGE_SIZE[name]:
        raise ValueError(f"Encoder {name!r} needs images of at least {MIN_IMAGE_SIZE[name]} px; got {image_size}")
    return ENCODERS[name](image_size, width or DEFAULT_WIDTH[name])
