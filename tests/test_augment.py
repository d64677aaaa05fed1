"""Tests for sslcore.augment. The augmentation computes on the Keras backend, so the tests that run it are marked
``core`` and run on TensorFlow, JAX and PyTorch (scripts/test.sh); the configuration tests run once."""
import colorsys
import json

import numpy as np
import pytest

import sslcore  # noqa: F401  (chooses the Keras backend before keras is imported)
import keras
from keras import ops

from sslcore.augment import (
    PRESETS,
    AugmentConfig,
    Augmenter,
    apply_color_matrices,
    augment_config,
    blur_matrices,
    boxes_to_affine,
    compose_color_jitter,
    grayscale,
    hue_rotation_matrices,
    resample_axis_aligned,
)

BACKEND = keras.backend.backend()
NO_COLOUR = dict(brightness=0.0, jitter=0.0)
NO_GEOMETRY = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)


def random_images(batch=4, size=16, seed=0, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (batch, size, size, 3)).astype("float32")


def horizontal_gradient(batch=2, size=64):
    """Pixel value = x / (size - 1) in every channel: makes horizontal zoom measurable."""
    ramp = np.linspace(0.0, 1.0, size, dtype="float32")
    return np.broadcast_to(ramp[None, None, :, None], (batch, size, size, 3)).copy()


def as_numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def run(config, images, seed=0):
    return as_numpy(Augmenter(config, seed=seed)(images))


# ------------------------------------------------------------------------------------------ layer basics


@pytest.mark.core
@pytest.mark.parametrize("preset", ["weak", "strong", "simclr"])
def test_shape_dtype_and_range_are_preserved(preset):
    images = random_images()
    out = Augmenter(augment_config(preset, blur_prob=0.5), seed=1)(images)
    assert tuple(out.shape) == images.shape
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    out = as_numpy(out)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.core
def test_training_false_is_identity_and_default_augments():
    images = random_images()
    layer = Augmenter("strong", seed=0)
    np.testing.assert_array_equal(as_numpy(layer(images, training=False)), images)
    assert not np.allclose(as_numpy(layer(images)), images)


@pytest.mark.core
def test_inference_through_a_model_passes_images_through():
    images = random_images()
    model = keras.Sequential([keras.Input((16, 16, 3)), Augmenter("simclr", seed=0)])
    np.testing.assert_allclose(model.predict(images, verbose=0), images)


@pytest.mark.core
@pytest.mark.parametrize("preset", ["strong", "simclr"])
def test_views_differ_per_image_within_a_batch(preset):
    images = np.repeat(random_images(batch=1), 6, axis=0)
    out = run(preset, images)
    for i in range(len(out)):
        for j in range(i + 1, len(out)):
            assert not np.allclose(out[i], out[j]), (i, j)


@pytest.mark.core
def test_two_calls_differ_and_same_seed_repeats():
    images = random_images()
    first_layer, second_layer = Augmenter("simclr", seed=3), Augmenter("simclr", seed=3)
    first_calls = [as_numpy(first_layer(images)) for _ in range(2)]
    second_calls = [as_numpy(second_layer(images)) for _ in range(2)]
    assert not np.allclose(first_calls[0], first_calls[1])
    for a, b in zip(first_calls, second_calls):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first_calls[0], run("simclr", images, seed=4))


# ------------------------------------------------------------------------------------------ geometry


@pytest.mark.core
def test_full_crop_without_flip_or_colour_is_identity():
    images = random_images()
    np.testing.assert_allclose(run(AugmentConfig(**NO_GEOMETRY, **NO_COLOUR), images), images, atol=1e-6)
    # The resampler itself (skipped above) is exact for a full-size box.
    full_box = np.array([[0.5, 0.5, 1.0, 1.0]] * 4, "float32")
    np.testing.assert_allclose(as_numpy(resample_axis_aligned(images, full_box)), images, atol=1e-6)


@pytest.mark.core
def test_negative_x_scale_mirrors_the_image():
    images = random_images()
    flipped_box = np.array([[0.5, 0.5, -1.0, 1.0]] * 4, "float32")
    np.testing.assert_allclose(as_numpy(resample_axis_aligned(images, flipped_box)), images[:, :, ::-1], atol=1e-6)


@pytest.mark.core
def test_resampler_agrees_with_keras_affine_transform():
    images = random_images(batch=6, size=12)
    rng = np.random.default_rng(1)
    width, height = rng.uniform(0.3, 1.0, 6), rng.uniform(0.3, 1.0, 6)
    boxes = np.stack(
        [width / 2 + rng.uniform(0, 1 - width), height / 2 + rng.uniform(0, 1 - height), width * rng.choice([-1, 1], 6), height],
        axis=1,
    ).astype("float32")
    ours = as_numpy(resample_axis_aligned(images, boxes))
    reference = ops.image.affine_transform(images, boxes_to_affine(boxes, 12, 12), interpolation="bilinear", fill_mode="nearest")
    np.testing.assert_allclose(ours, as_numpy(reference), atol=1e-5)


def value_span(out, axis):
    """Range of the gradient's values along ``axis`` of each output image (rows/cols are all equal)."""
    return out.max(axis=axis) - out.min(axis=axis)


@pytest.mark.core
def test_quarter_area_crop_is_a_2x_zoom():
    images = horizontal_gradient()
    out = run(AugmentConfig(crop_scale=(0.25, 0.25), flip=False, **NO_COLOUR), images)
    np.testing.assert_allclose(value_span(out, axis=2), 0.5, atol=0.01)
    assert np.all(np.diff(out[..., 0], axis=2) >= -1e-6)  # not flipped: still increasing left to right


@pytest.mark.core
def test_crop_ratio_stretches_width_against_height():
    # Area 1/4 with ratio 4: the crop keeps the full width and a quarter of the height.
    images = horizontal_gradient()
    out = run(AugmentConfig(crop_scale=(0.25, 0.25), crop_ratio=(4.0, 4.0), flip=False, **NO_COLOUR), images)
    np.testing.assert_allclose(value_span(out, axis=2), 1.0, atol=1e-5)
    transposed = run(AugmentConfig(crop_scale=(0.25, 0.25), crop_ratio=(0.25, 0.25), flip=False, **NO_COLOUR), images)
    np.testing.assert_allclose(value_span(transposed, axis=2), 0.25, atol=0.01)


@pytest.mark.core
def test_flip_happens_for_about_half_the_images():
    images = horizontal_gradient(batch=64, size=8)
    out = run(AugmentConfig(**{**NO_GEOMETRY, "flip": True}, **NO_COLOUR), images)
    mirrored = np.array([np.allclose(view, images[0][:, ::-1], atol=1e-6) for view in out])
    unchanged = np.array([np.allclose(view, images[0], atol=1e-6) for view in out])
    assert np.all(mirrored | unchanged)
    assert 16 <= mirrored.sum() <= 48


# ------------------------------------------------------------------------------------------ colour


@pytest.mark.core
def test_brightness_only_scales_each_image():
    images = random_images(batch=8, low=0.2, high=0.6)
    out = run(AugmentConfig(**NO_GEOMETRY, brightness=0.5, jitter=0.0), images)
    scale = out / images
    per_image = scale.reshape(8, -1)
    np.testing.assert_allclose(per_image, np.broadcast_to(per_image[:, :1], per_image.shape), rtol=1e-4)  # one factor per image, no channel mixing
    assert np.all((per_image[:, 0] >= 0.5) & (per_image[:, 0] <= 1.5))
    assert np.ptp(per_image[:, 0]) > 0.05  # and the factor differs between images


@pytest.mark.core
def test_grayscale_prob_one_gives_equal_channels():
    out = run(augment_config("simclr", grayscale_prob=1.0), random_images())
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)


@pytest.mark.core
def test_color_jitter_with_zero_probability_leaves_colours_alone():
    images = random_images()
    config = AugmentConfig(**NO_GEOMETRY, **NO_COLOUR, color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.0)
    np.testing.assert_array_equal(run(config, images), images)


@pytest.mark.core
def test_color_jitter_probability_selects_whole_images():
    images = random_images(batch=64, size=4)
    config = AugmentConfig(**NO_GEOMETRY, **NO_COLOUR, color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.5)
    out = run(config, images)
    untouched = np.array([np.array_equal(o, i) for o, i in zip(out, images)])
    assert 16 <= untouched.sum() <= 48


@pytest.mark.core
def test_hue_jitter_keeps_luma_and_contrast_keeps_mean_luma():
    images = random_images(batch=8, low=0.4, high=0.6)  # mid tones: nothing clips
    hue_only = run(AugmentConfig(**NO_GEOMETRY, **NO_COLOUR, color_jitter=(0, 0, 0, 0.5), color_jitter_prob=1.0), images)
    assert not np.allclose(hue_only, images, atol=1e-3)
    np.testing.assert_allclose(as_numpy(grayscale(hue_only)), as_numpy(grayscale(images)), atol=1e-4)
    contrast_only = run(AugmentConfig(**NO_GEOMETRY, **NO_COLOUR, color_jitter=(0, 0.4, 0, 0), color_jitter_prob=1.0), images)
    np.testing.assert_allclose(
        as_numpy(grayscale(contrast_only)).mean(axis=(1, 2, 3)), as_numpy(grayscale(images)).mean(axis=(1, 2, 3)), atol=1e-4
    )


@pytest.mark.core
def test_positive_hue_shift_moves_red_towards_yellow_like_hsv():
    red = ops.convert_to_tensor(np.array([[[[0.9, 0.2, 0.2]]]], "float32"))
    shifted = as_numpy(apply_color_matrices(red, hue_rotation_matrices(ops.convert_to_tensor([0.05]))))[0, 0, 0]
    hue = colorsys.rgb_to_hsv(*np.clip(shifted, 0, 1))[0]
    assert 0.02 < hue < 0.1
    np.testing.assert_array_equal(as_numpy(hue_rotation_matrices(ops.convert_to_tensor([0.0])))[0], np.eye(3))


@pytest.mark.core
def test_blur_smooths_noise_and_keeps_flat_images():
    config = AugmentConfig(**NO_GEOMETRY, **NO_COLOUR, blur_prob=1.0, blur_sigma=(1.0, 2.0))
    noise = random_images(size=32)
    blurred = run(config, noise)
    assert blurred.std() < 0.5 * noise.std()
    np.testing.assert_allclose(blurred.mean(axis=(1, 2)), noise.mean(axis=(1, 2)), atol=0.02)
    flat = np.full((2, 16, 16, 3), 0.3, "float32")
    np.testing.assert_allclose(run(config, flat), flat, atol=1e-6)


@pytest.mark.core
def test_blur_with_zero_probability_is_exact_identity_per_image():
    images = random_images(batch=32, size=8)
    out = run(AugmentConfig(**NO_GEOMETRY, **NO_COLOUR, blur_prob=0.5), images)
    untouched = np.array([np.allclose(o, i, atol=1e-7) for o, i in zip(out, images)])
    assert 4 <= untouched.sum() <= 28


# ------------------------------------------------------------------------------------------ XLA


@pytest.mark.core
def test_layer_supports_jit():
    assert Augmenter("simclr").supports_jit


@pytest.mark.core
@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit test")
def test_jax_jit_stateless_call_threads_the_seed_state():
    import jax

    layer = Augmenter(augment_config("simclr", blur_prob=0.5), seed=0)
    images = random_images()
    layer(images)  # build

    @jax.jit
    def view(state, batch):
        return layer.stateless_call([], state, batch, training=True)

    state = [variable.value for variable in layer.non_trainable_variables]
    first, state = view(state, images)
    second, state = view(state, images)
    assert first.shape == images.shape
    assert not np.allclose(np.asarray(first), np.asarray(second))
    assert np.asarray(first).min() >= 0.0 and np.asarray(first).max() <= 1.0


@pytest.mark.core
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function(jit_compile=True) test")
@pytest.mark.parametrize("config", [augment_config("strong"), augment_config("simclr", blur_prob=0.5)])
def test_tensorflow_xla_compiles_with_a_dynamic_batch(config):
    # jit_compile=True fails loudly on ops without an XLA kernel (e.g. ImageProjectiveTransformV3).
    import tensorflow as tf

    layer = Augmenter(config, seed=0)

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec((None, 16, 16, 3), tf.float32)])
    def view(batch):
        return layer(batch, training=True)

    images = random_images()
    first, second = view(images).numpy(), view(images).numpy()
    assert first.shape == images.shape
    assert not np.allclose(first, second)


@pytest.mark.core
def test_float32_even_under_mixed_bfloat16_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = Augmenter("strong", seed=0)
        out = layer(ops.cast(random_images(), "bfloat16"))
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


# ------------------------------------------------------------------------------------------ config & serialisation


def test_get_config_round_trip():
    layer = Augmenter(augment_config("simclr", blur_prob=0.5), seed=11, name="views")
    clone = Augmenter.from_config(json.loads(json.dumps(layer.get_config())))
    assert clone.config == layer.config and clone.seed == 11 and clone.name == "views"
    images = random_images()
    np.testing.assert_array_equal(as_numpy(clone(images)), as_numpy(Augmenter(layer.config, seed=11)(images)))


def test_registered_for_keras_serialization():
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(Augmenter("weak", seed=2)))
    assert isinstance(restored, Augmenter) and restored.config == PRESETS["weak"]


def test_config_dict_round_trip_is_json_friendly():
    config = PRESETS["simclr"]
    as_dict = json.loads(json.dumps(config.to_dict()))
    assert isinstance(as_dict["crop_scale"], list)
    restored = AugmentConfig.from_dict(as_dict)
    assert restored == config and isinstance(restored.color_jitter, tuple)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(crop_scale=(0.0, 1.0)), "crop_scale"),
        (dict(crop_scale=(0.5, 1.5)), "crop_scale"),
        (dict(crop_scale=(0.9, 0.5)), "crop_scale"),
        (dict(crop_scale=0.5), "crop_scale"),
        (dict(crop_ratio=(2.0, 1.0)), "crop_ratio"),
        (dict(crop_ratio=(-1.0, 1.0)), "crop_ratio"),
        (dict(brightness=-0.1), "brightness"),
        (dict(jitter=float("nan")), "jitter"),
        (dict(color_jitter=(0.4, -0.1, 0.4, 0.1)), "color_jitter"),
        (dict(color_jitter=(0.4, 0.4, 0.4, 0.6)), "hue"),
        (dict(color_jitter=(0.4, 0.4, 0.4)), "color_jitter"),
        (dict(color_jitter_prob=1.5), "color_jitter_prob"),
        (dict(grayscale_prob=-0.1), "grayscale_prob"),
        (dict(blur_prob=2.0), "blur_prob"),
        (dict(blur_sigma=(0.0, 1.0)), "blur_sigma"),
        (dict(blur_sigma=(2.0, 1.0)), "blur_sigma"),
        (dict(flip="yes"), "flip"),
    ],
)
def test_impossible_configs_are_rejected(overrides, field):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**overrides)


def test_validate_catches_mutation_after_construction():
    config = AugmentConfig()
    config.grayscale_prob = 3.0
    with pytest.raises(ValueError, match="grayscale_prob"):
        config.validate()
    with pytest.raises(ValueError, match="grayscale_prob"):
        Augmenter(config)


def test_presets_and_overrides():
    assert augment_config("weak").crop_scale == (0.75, 1.0) and augment_config("weak").brightness == 0.3
    assert augment_config("strong").crop_scale == (0.25, 1.0) and augment_config("strong").jitter == 0.2
    default = augment_config()   # "contrastive": strong's crops, SimCLR's colour distortion
    assert default.crop_scale == (0.25, 1.0) and default.jitter == 0.0 and default.color_jitter_prob == 0.8
    simclr = augment_config("simclr")
    assert simclr.crop_scale == (0.08, 1.0) and simclr.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert simclr.color_jitter == (0.4, 0.4, 0.4, 0.1) and simclr.grayscale_prob == 0.2 and simclr.brightness == 0.0
    assert augment_config("simclr", blur_prob=0.5).blur_prob == 0.5
    assert PRESETS["simclr"].blur_prob == 0.0  # overrides never leak into the presets
    assert Augmenter("weak").config == PRESETS["weak"]


def test_unknown_preset_and_option_name_the_valid_ones():
    with pytest.raises(ValueError, match="simclr"):
        augment_config("medium")
    with pytest.raises(ValueError, match="crop_scale"):
        augment_config("strong", zoom=0.2)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig.from_dict({"zoom": 0.2})


@pytest.mark.core
def test_blur_matrices_match_a_reflect_padded_convolution():
    size, radius = 7, 3
    kernel = np.array([[0.05, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05]], "float32")
    signal = np.random.default_rng(0).uniform(0, 1, size).astype("float32")
    padded = np.pad(signal, radius, mode="reflect")  # torchvision's blur padding
    expected = np.array([padded[i : i + 2 * radius + 1] @ kernel[0] for i in range(size)])
    matrix = as_numpy(blur_matrices(kernel, size))[0]
    np.testing.assert_allclose(matrix @ signal, expected, atol=1e-6)


def sequential_color_jitter(pixels, brightness, contrast, saturation, hue):
    """numpy reference, step by step as torchvision does it (no clamping needed for mid-tone inputs)."""
    luma = lambda p: p @ np.array([0.299, 0.587, 0.114])
    pixels = pixels * brightness
    pixels = contrast * pixels + (1 - contrast) * luma(pixels).mean()
    pixels = saturation * pixels + (1 - saturation) * luma(pixels)[..., None]
    rgb_to_yiq = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
    angle = -2 * np.pi * hue  # HSV hue runs from I towards -Q in YIQ
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return pixels @ (np.linalg.inv(rgb_to_yiq) @ rotation @ rgb_to_yiq).T


@pytest.mark.core
def test_composed_color_jitter_equals_the_steps_in_sequence():
    images = random_images(batch=3, size=5, low=0.45, high=0.55)
    factors = {
        "brightness": np.array([0.9, 1.1, 1.0], "float32"),
        "contrast": np.array([0.8, 1.2, 1.0], "float32"),
        "saturation": np.array([1.3, 0.7, 1.0], "float32"),
        "hue": np.array([0.05, -0.1, 0.0], "float32"),
    }
    # These are in-graph helpers: they take backend tensors, as the augmentation layer hands them.
    tensors = {name: ops.convert_to_tensor(value) for name, value in factors.items()}
    matrices, offsets = compose_color_jitter(ops.convert_to_tensor(images.mean(axis=(1, 2))), **tensors)
    ours = as_numpy(apply_color_matrices(ops.convert_to_tensor(images), matrices) + offsets[:, None])
    for b in range(3):
        expected = sequential_color_jitter(images[b].astype("float64"), *(factors[name][b] for name in factors))
        np.testing.assert_allclose(ours[b], expected, atol=1e-5)
    np.testing.assert_allclose(ours[2], images[2], atol=1e-6)  # all factors neutral
