"""Tests for sslcore.data: every source, every decoding rule, every way input can be bad.

All images are generated in tmp_path; nothing reads /work/shared/data or the network.
"""

import io
import os
import time
import socket
import sys

import numpy as np
import pytest
from PIL import Image

from sslcore import data
from sslcore.data import folders, tfds_source
from sslcore.data import DataError, Dataset, decode_image, load, load_folder, stratified_split

# An empty cache of each test's own (tests/conftest.py): these tests count what is decoded and cached.
pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# --------------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------------


def save(path, image, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def solid(color, size=(20, 20), mode="RGB"):
    return Image.new(mode, size, color)


def noise_jpeg_bytes(size=64, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def sixteen_bit(value, size=(12, 10)):
    return Image.fromarray(np.full(size[::-1], value, dtype=np.uint16))


def palette_gif_with_transparency():
    """Left half palette index 0 (transparent), right half index 1 (green)."""
    indices = np.zeros((10, 10), dtype=np.uint8)
    indices[:, 5:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    buffer = io.BytesIO()
    image.save(buffer, "GIF", transparency=0)
    return Image.open(io.BytesIO(buffer.getvalue()))


def write_good_images(folder, count=2):
    for index in range(count):
        save(folder / f"good{index}.png", solid((index * 40, 100, 200)))


@pytest.fixture
def labelled_folder(tmp_path):
    """Three classes in varied modes, sizes and nesting, plus files that must be ignored."""
    root = tmp_path / "pets"
    save(root / "cat" / "rgb.png", solid((255, 0, 0), (40, 30)))
    save(root / "cat" / "gray.jpg", solid(128, (24, 24), "L"))
    save(root / "cat" / "deep" / "nested" / "rgba.png", solid((0, 0, 255, 255), (32, 48), "RGBA"))
    save(root / "dog" / "palette.gif", solid(3, (16, 16), "P"))
    save(root / "dog" / "sixteen.png", sixteen_bit(32896))
    save(root / "dog" / "cmyk.jpg", solid((0, 255, 255, 0), (50, 20), "CMYK"))
    save(root / "fish" / "a.bmp", solid((0, 255, 0), (9, 9)))
    save(root / "fish" / "b.webp", solid((0, 255, 0), (64, 64)))
    save(root / "fish" / "c.tiff", solid((0, 255, 0), (10, 30)))
    save(root / "fish" / "D.PPM", solid((0, 255, 0), (17, 17)))
    (root / "fish" / ".hidden.png").write_bytes(b"not an image")  # hidden: ignored
    (root / "fish" / "notes.txt").write_text("ignored")  # not an image extension: ignored
    (root / ".git").mkdir()
    save(root / ".git" / "x.png", solid((1, 2, 3)))  # hidden folder: not a class
    (root / "empty_class").mkdir()  # no images: not a class
    return root


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def test_digits_shapes_dtype_and_range():
    dataset = load("digits", 16)
    assert dataset.train_images.shape[1:] == (16, 16, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_images.flags["C_CONTIGUOUS"]
    assert len(dataset.train_images) + len(dataset.test_images) == 1797
    assert dataset.train_images.min() == 0 and dataset.train_images.max() == 255
    assert dataset.train_labels.dtype == np.int32 and dataset.test_labels.dtype == np.int32
    assert dataset.class_names == [str(digit) for digit in range(10)]
    assert dataset.num_classes == 10 and dataset.image_size == 16
    assert dataset.labelled_images is dataset.train_images
    assert np.array_equal(dataset.train_images[..., 0], dataset.train_images[..., 2])  # gray in 3 channels


def test_digits_split_is_stratified():
    dataset = load("digits", 8, test_fraction=0.2)
    all_labels = np.concatenate([dataset.train_labels, dataset.test_labels])
    for digit in range(10):
        in_class = int((all_labels == digit).sum())
        assert (dataset.test_labels == digit).sum() == int(np.floor(in_class * 0.2 + 0.5))


def test_digits_split_is_deterministic_in_seed():
    first, again, other = (load("digits", 8, seed=seed) for seed in (0, 0, 1))
    assert np.array_equal(first.test_images, again.test_images)
    assert np.array_equal(first.test_labels, again.test_labels)
    assert not np.array_equal(first.test_images, other.test_images)


def test_digits_at_native_size_keeps_the_original_pixels():
    from sklearn.datasets import load_digits

    dataset = load("digits", 8, test_fraction=0.0)
    expected = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    assert np.array_equal(dataset.train_images[..., 0], expected)
    assert dataset.test_images is None and dataset.test_labels is None


def test_stratified_split_has_no_overlap_and_covers_everything():
    labels = np.repeat(np.arange(5), [1, 2, 3, 10, 50])
    train, test = stratified_split(labels, 0.2, seed=3)
    assert not set(train) & set(test)
    assert sorted(np.concatenate([train, test])) == list(range(len(labels)))
    assert set(labels[train]) == set(range(5))  # every class keeps a training image
    assert 0 not in labels[test]  # a one-image class is train-only
    assert (labels[test] == 1).sum() == 1 and (labels[test] == 4).sum() == 10


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="test_fraction"):
        load("digits", 8, test_fraction=1.0)
    with pytest.raises(ValueError, match="image_size"):
        load("digits", 0)


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def test_labelled_folder_decodes_every_mode(labelled_folder):
    folder = load_folder(labelled_folder, 16)
    assert folder.class_names == ["cat", "dog", "fish"]
    assert folder.images.shape == (10, 16, 16, 3) and folder.images.dtype == np.uint8
    assert folder.images.flags["C_CONTIGUOUS"]
    assert "cat/deep/nested/rgba.png" in folder.paths and "fish/D.PPM" in folder.paths
    assert not any("hidden" in path or "notes" in path or ".git" in path for path in folder.paths)
    for path, label in zip(folder.paths, folder.labels):
        assert path.split("/")[0] == folder.class_names[label]
    pixel = {path: folder.images[index, 8, 8] for index, path in enumerate(folder.paths)}
    assert np.allclose(pixel["dog/sixteen.png"], 128, atol=1)
    assert np.allclose(pixel["dog/cmyk.jpg"], [255, 0, 0], atol=8)
    assert np.allclose(pixel["cat/gray.jpg"], 128, atol=2)
    assert np.array_equal(pixel["cat/deep/nested/rgba.png"], [0, 0, 255])


def test_labelled_folder_source_splits_by_class(labelled_folder):
    dataset = load(f"folder:{labelled_folder}", 16, test_fraction=0.5, seed=1)
    assert dataset.class_names == ["cat", "dog", "fish"]
    assert len(dataset.train_paths) == len(dataset.train_images) == len(dataset.train_labels)
    assert len(dataset.test_paths) == len(dataset.test_images) == len(dataset.test_labels)
    assert not set(dataset.train_paths) & set(dataset.test_paths)
    assert len(dataset.train_paths) + len(dataset.test_paths) == 10
    assert set(dataset.train_labels) == set(dataset.test_labels) == {0, 1, 2}


def test_flat_folder_is_unlabelled(tmp_path):
    write_good_images(tmp_path / "flat", count=3)
    dataset = load(f"folder:{tmp_path / 'flat'}", 8)
    assert dataset.train_images.shape == (3, 8, 8, 3)
    assert dataset.train_labels is None and dataset.test_images is None
    assert dataset.class_names == [] and dataset.labelled_images is None
    assert dataset.train_paths == ["good0.png", "good1.png", "good2.png"]


def test_mixed_sizes_are_center_cropped_not_squashed(tmp_path):
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, :10] = [0, 0, 255]
    wide[:, 10:20] = [255, 0, 0]  # the centre square
    wide[:, 20:] = [0, 0, 255]
    save(tmp_path / "flat" / "wide.png", Image.fromarray(wide))
    save(tmp_path / "flat" / "big.png", solid((255, 0, 0), (100, 100)))
    save(tmp_path / "flat" / "tiny.png", solid((255, 0, 0), (3, 5)))
    folder = load_folder(tmp_path / "flat", 10)
    assert folder.images.shape == (3, 10, 10, 3)
    assert np.all(folder.images == np.array([255, 0, 0], dtype=np.uint8))


# --------------------------------------------------------------------------------------------
# decode_image
# --------------------------------------------------------------------------------------------


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_decode_image_accepts_bytes_path_file_and_pil(tmp_path):
    image = solid((10, 200, 30), (6, 6))
    path = save(tmp_path / "x.png", image)
    expected = np.full((4, 4, 3), [10, 200, 30], dtype=np.uint8)
    for source in (png_bytes(image), path, str(path), io.BytesIO(png_bytes(image)), image):
        decoded = decode_image(source, 4)
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected)


@pytest.mark.parametrize(
    "image, expected",
    [
        (sixteen_bit(32896), 128),  # scaled by 1/257, not clipped to 255
        (sixteen_bit(65535), 255),
        (sixteen_bit(1000).convert("I"), 4),
        (Image.fromarray(np.full((5, 5), 0.5, np.float32)), 128),
        (solid((0, 0, 0, 0), mode="RGBA"), 255),  # fully transparent -> white
        (solid((50, 0), mode="LA"), 255),
        (solid(1, mode="1"), 255),
    ],
    ids=["I;16", "I;16-max", "I", "F", "RGBA-transparent", "LA-transparent", "1-bit"],
)
def test_decode_image_converts_modes(image, expected):
    assert np.allclose(decode_image(image, 4), expected, atol=1)


def test_palette_transparency_becomes_white():
    decoded = decode_image(palette_gif_with_transparency(), 10)
    assert np.array_equal(decoded[5, 1], [255, 255, 255])
    assert np.array_equal(decoded[5, 8], [0, 255, 0])


def test_exif_orientation_is_applied():
    pixels = np.zeros((20, 20, 3), dtype=np.uint8)
    pixels[:10] = [255, 0, 0]  # red on top as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # "rotate 180 to display"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue(), 20)
    assert decoded[18, 10, 0] > 200 and decoded[2, 10, 0] < 50  # red now at the bottom


def test_decode_image_rejects_garbage_bytes():
    with pytest.raises(DataError, match="not an image"):
        decode_image(b"definitely not an image", 8)
    with pytest.raises(DataError, match="0 bytes"):
        decode_image(b"", 8)


def test_decode_image_names_the_upload():
    with pytest.raises(DataError, match="holiday.jpg"):
        decode_image(b"garbage", 8, name="holiday.jpg")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = save(tmp_path / "bomb.png", solid((0, 0, 0), (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"bomb\.png.*decompression bomb"):
        decode_image(path, 8)


# --------------------------------------------------------------------------------------------
# Bad folders and files
# --------------------------------------------------------------------------------------------

BAD_FILES = {
    "truncated.jpg": (lambda: noise_jpeg_bytes()[: len(noise_jpeg_bytes()) // 2], "truncated"),
    "empty.png": (lambda: b"", "0 bytes"),
    "notes.png": (lambda: b"just some text, renamed to .png\n", "not an image"),
}


@pytest.mark.parametrize("file_name", sorted(BAD_FILES))
def test_bad_file_error_names_the_file(tmp_path, file_name):
    make_bytes, reason = BAD_FILES[file_name]
    folder = tmp_path / "flat"
    write_good_images(folder)
    (folder / file_name).write_bytes(make_bytes())
    with pytest.raises(DataError, match=reason) as error:
        load(f"folder:{folder}", 8)
    assert file_name in str(error.value) and "skip_bad_images" in str(error.value)
    with pytest.raises(DataError, match=file_name):
        decode_image(folder / file_name, 8)


def test_skip_bad_images_collects_them(tmp_path):
    folder = tmp_path / "flat"
    write_good_images(folder, count=2)
    for file_name, (make_bytes, _) in BAD_FILES.items():
        (folder / file_name).write_bytes(make_bytes())
    dataset = load(f"folder:{folder}", 8, skip_bad_images=True)
    assert dataset.train_images.shape == (2, 8, 8, 3)
    assert dataset.train_paths == ["good0.png", "good1.png"]
    skipped = dict(dataset.skipped)
    assert set(skipped) == set(BAD_FILES)
    for file_name, (_, reason) in BAD_FILES.items():
        assert reason in skipped[file_name]


def test_skip_bad_images_keeps_labels_aligned(labelled_folder):
    (labelled_folder / "dog" / "broken.png").write_bytes(b"")
    folder = load_folder(labelled_folder, 8, skip_bad_images=True)
    assert [path for path, _ in folder.skipped] == ["dog/broken.png"]
    assert len(folder.images) == len(folder.labels) == len(folder.paths) == 10
    for path, label in zip(folder.paths, folder.labels):
        assert path.split("/")[0] == folder.class_names[label]


def test_nothing_readable_left(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="None of the 1 images"):
        load_folder(tmp_path / "flat", 8, skip_bad_images=True)


def test_empty_folder(tmp_path):
    (tmp_path / "nothing" / "sub").mkdir(parents=True)
    (tmp_path / "nothing" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"nothing contains no images"):
        load(f"folder:{tmp_path / 'nothing'}", 8)


def test_one_class_folder(tmp_path):
    write_good_images(tmp_path / "root" / "only_class")
    with pytest.raises(DataError, match="at least 2 classes") as error:
        load(f"folder:{tmp_path / 'root'}", 8)
    assert "unlabelled" in str(error.value) and "only_class" in str(error.value)


def test_loose_images_next_to_class_folders(tmp_path):
    write_good_images(tmp_path / "root")
    write_good_images(tmp_path / "root" / "a")
    write_good_images(tmp_path / "root" / "b")
    with pytest.raises(DataError, match="mixes loose images"):
        load(f"folder:{tmp_path / 'root'}", 8)


def test_nonexistent_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(f"folder:{tmp_path / 'missing'}", 8)


def test_folder_source_pointing_at_a_file(tmp_path):
    path = save(tmp_path / "one.png", solid((0, 0, 0)))
    with pytest.raises(DataError, match="is a file, not a folder"):
        load(f"folder:{path}", 8)


@pytest.mark.parametrize("source", ["mnist", "folder:", "tfds:", "", "http://x"])
def test_unknown_source(source):
    with pytest.raises(DataError, match="Valid forms: 'digits', 'folder:PATH'"):
        load(source, 8)


def test_bare_directory_suggests_the_folder_prefix(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=f"folder:{tmp_path}"):
        load(str(tmp_path), 8)
    monkeypatch.setenv("SSLCORE_PUBLIC", "1")   # a stranger learns nothing of which server paths exist
    with pytest.raises(DataError) as refused:
        load(str(tmp_path), 8)
    assert "folder:" not in str(refused.value).split("Valid forms")[0] and "To train on that directory" not in str(refused.value)


# --------------------------------------------------------------------------------------------
# The folder cache
# --------------------------------------------------------------------------------------------


def cache_files(cache_dir):
    return sorted(name for name in os.listdir(cache_dir) if name.endswith(".npz"))


def forbid_decoding(monkeypatch):
    def decode_must_not_run(*args, **kwargs):
        raise AssertionError("decoded although the cache should have answered")

    monkeypatch.setattr(folders, "decode_image", decode_must_not_run)


def count_decoding(monkeypatch):
    calls = []
    real = folders.decode_image

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(folders, "decode_image", counting)
    return calls


def test_decoded_size_limit_is_a_public_servers_and_refuses_before_decoding(labelled_folder, tmp_path, monkeypatch):
    from sslcore.data.dataset import PUBLIC_DECODED_LIMIT_MB, decoded_limit_bytes

    monkeypatch.delenv("SSLCORE_MAX_DECODED_MB", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("SSLCORE_PUBLIC", raising=False)
    assert decoded_limit_bytes() is None                       # the user's own machine: no limit
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    assert decoded_limit_bytes() == PUBLIC_DECODED_LIMIT_MB * 1024 ** 2
    monkeypatch.setenv("SSLCORE_MAX_DECODED_MB", "0.001")
    forbid_decoding(monkeypatch)      # refused before any file is decoded
    with pytest.raises(DataError, match=r"images at 512 px would take .* over this server's limit .* pick an image size"):
        load_folder(labelled_folder, 512, cache_dir=str(tmp_path / "cache"))


def test_a_public_servers_cache_stays_within_its_limit_dropping_the_least_recently_used(labelled_folder, tmp_path,
                                                                                        monkeypatch):
    """Strangers pick the data and the image size, and each pair is a cache file as large as the decoded set: on a
    public server a cache folder keeps within SSLCORE_CACHE_MB, the least recently used files going first."""
    scratch = tmp_path / "scratch"
    sizes = {}
    for side in (8, 12, 16):
        load_folder(labelled_folder, side, cache_dir=str(scratch))
        sizes[side] = sum((scratch / name).stat().st_size for name in cache_files(scratch)) - sum(sizes.values())
    monkeypatch.setenv("SSLCORE_PUBLIC", "1")
    monkeypatch.setenv("SSLCORE_CACHE_MB", str((sizes[8] + sizes[16] + sizes[12] / 2) / 1024 ** 2))
    cache_dir = tmp_path / "cache"
    load_folder(labelled_folder, 8, cache_dir=str(cache_dir))
    load_folder(labelled_folder, 12, cache_dir=str(cache_dir))
    assert len(cache_files(cache_dir)) == 2
    for name in cache_files(cache_dir):    # written a while ago, 8 px first (the clock's tick is coarser than this)
        written = time.time() - (120 if "-8px-" in name else 60)
        os.utime(cache_dir / name, (written, written))
    decode = folders.decode_image
    forbid_decoding(monkeypatch)
    load_folder(labelled_folder, 8, cache_dir=str(cache_dir))       # read from the cache: now the most recently used
    monkeypatch.setattr(folders, "decode_image", decode)
    load_folder(labelled_folder, 16, cache_dir=str(cache_dir))
    kept = cache_files(cache_dir)
    assert len(kept) == 2 and any("-8px-" in name for name in kept) and any("-16px-" in name for name in kept), kept


def test_second_load_comes_from_the_cache(labelled_folder, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = load_folder(labelled_folder, 12, cache_dir=str(cache_dir))
    assert len(cache_files(cache_dir)) == 1
    forbid_decoding(monkeypatch)
    second = load_folder(labelled_folder, 12, cache_dir=str(cache_dir))
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert second.paths == first.paths and second.class_names == first.class_names
    assert second.images.dtype == np.uint8 and second.labels.dtype == np.int32


def test_cache_remembers_unlabelled_and_skipped(tmp_path, monkeypatch):
    folder = tmp_path / "flat"
    write_good_images(folder)
    (folder / "bad.png").write_bytes(b"")
    first = load_folder(folder, 8, skip_bad_images=True)
    assert os.listdir(tmp_path / "sslcore-cache" / "folders")  # $SSLCORE_CACHE is honoured
    forbid_decoding(monkeypatch)
    second = load_folder(folder, 8, skip_bad_images=True)
    assert second.labels is None and second.class_names == []
    assert second.skipped == first.skipped and second.paths == first.paths


def test_changed_file_invalidates_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "flat"
    write_good_images(folder)
    cache_dir = tmp_path / "cache"
    load_folder(folder, 8, cache_dir=str(cache_dir))
    save(folder / "good1.png", solid((9, 9, 9)))
    stat = os.stat(folder / "good1.png")
    os.utime(folder / "good1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls = count_decoding(monkeypatch)
    updated = load_folder(folder, 8, cache_dir=str(cache_dir))
    assert len(calls) == 2
    assert np.all(updated.images[1] == 9)
    assert len(cache_files(cache_dir)) == 1  # the stale cache was pruned


def test_added_file_and_other_size_miss_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "flat"
    write_good_images(folder)
    cache_dir = str(tmp_path / "cache")
    load_folder(folder, 8, cache_dir=cache_dir)
    calls = count_decoding(monkeypatch)
    assert len(load_folder(folder, 9, cache_dir=cache_dir).images) == 2
    write_good_images(folder, count=3)
    assert len(load_folder(folder, 8, cache_dir=cache_dir).images) == 3
    assert len(calls) == 5


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    folder = tmp_path / "flat"
    write_good_images(folder)
    cache_dir = tmp_path / "cache"
    first = load_folder(folder, 8, cache_dir=str(cache_dir))
    (cache_name,) = cache_files(cache_dir)
    (cache_dir / cache_name).write_bytes(b"PK\x03\x04 broken zip")
    calls = count_decoding(monkeypatch)
    again = load_folder(folder, 8, cache_dir=str(cache_dir))
    assert len(calls) == 2 and np.array_equal(first.images, again.images)


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets (mocked: no download, no network)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


def test_tfds_cifar10_is_resized(tfds, tmp_path, no_network):
    with tfds.testing.mock_data(num_examples=6):
        dataset = load("tfds:cifar10", 16, tfds_data_dir=str(tmp_path))
    assert dataset.name == "tfds:cifar10"
    assert dataset.train_images.shape == (6, 16, 16, 3) and dataset.test_images.shape == (6, 16, 16, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int32
    assert dataset.train_labels.shape == (6,) and dataset.num_classes == 10
    assert dataset.labelled_images is dataset.train_images and dataset.probe_images is None


def test_tfds_at_native_size_keeps_pixels(tfds, tmp_path, no_network):
    with tfds.testing.mock_data(num_examples=3):
        dataset = load("tfds:cifar10", 32, tfds_data_dir=str(tmp_path))
    assert dataset.train_images.shape == (3, 32, 32, 3) and dataset.train_images.flags["C_CONTIGUOUS"]


def test_tfds_stl10_pretrains_on_unlabelled_and_probes_on_train(tfds, tmp_path, no_network):
    with tfds.testing.mock_data(num_examples=4):
        dataset = load("tfds:stl10", 32, tfds_data_dir=str(tmp_path))
    assert dataset.train_images.shape == (4, 32, 32, 3) and dataset.train_labels is None
    assert dataset.probe_images.shape == (4, 32, 32, 3) and dataset.probe_labels.dtype == np.int32
    assert dataset.test_images.shape == (4, 32, 32, 3) and dataset.test_labels.shape == (4,)
    assert dataset.labelled_images is dataset.probe_images
    assert dataset.labelled_labels is dataset.probe_labels


def test_tfds_grayscale_dataset_becomes_rgb(tfds, tmp_path, no_network):
    with tfds.testing.mock_data(num_examples=2):
        dataset = load("tfds:mnist", 8, tfds_data_dir=str(tmp_path))
    assert dataset.train_images.shape == (2, 8, 8, 3)


def test_tfds_not_prepared_says_how_to_get_it(tfds, tmp_path, no_network, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare must not run when download=False")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(DataError, match="tfds build cifar10") as error:
        load("tfds:cifar10", 32, tfds_data_dir=str(tmp_path))
    assert str(tmp_path) in str(error.value) and "TFDS_DATA_DIR" in str(error.value)


def test_tfds_unknown_dataset(tfds, tmp_path, no_network):
    with pytest.raises(DataError, match="no dataset named 'no_such_dataset_xyz'"):
        load("tfds:no_such_dataset_xyz", 32, tfds_data_dir=str(tmp_path))


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_prepared_cifar10(tfds, data_dir, splits, image_side=32):
    """Write a tiny, really prepared cifar10 (tfrecords + metadata) without any download, so the
    unmocked reading path runs. Labels cycle through the classes."""
    import tensorflow as tf

    features = tfds.features.FeaturesDict({  # cifar10's own schema, with its label names
        "id": tfds.features.Text(),
        "image": tfds.features.Image(shape=(image_side, image_side, 3)),
        "label": tfds.features.ClassLabel(names=CIFAR_NAMES),
    })
    name = "cifar10"
    version_dir = tfds.builder(name, data_dir=str(data_dir)).data_dir
    os.makedirs(version_dir)
    rng = np.random.default_rng(0)
    infos = []
    for split, count in splits.items():
        path = os.path.join(version_dir, f"{name}-{split}.tfrecord-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for index in range(count):
                image = rng.integers(0, 256, (image_side, image_side, 3), dtype=np.uint8)
                example = {"id": f"{split}_{index}", "image": image, "label": index % 10}
                writer.write(features.serialize_example(example))
        infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[count], num_bytes=0, filename_template=None))
    tfds.folder_dataset.write_metadata(
        data_dir=version_dir, features=features, split_infos=infos,
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
    )


def test_tfds_prepared_dataset_is_read_for_real(tfds, tmp_path, no_network):
    write_prepared_cifar10(tfds, tmp_path, {"train": 12, "test": 5})
    dataset = load("tfds:cifar10", 8, tfds_data_dir=str(tmp_path))
    assert dataset.class_names == CIFAR_NAMES
    assert dataset.train_images.shape == (12, 8, 8, 3) and dataset.test_images.shape == (5, 8, 8, 3)
    assert list(dataset.train_labels) == [index % 10 for index in range(12)]
    assert dataset.train_labels.dtype == np.int32


def test_tfds_without_test_split_holds_out_part_of_train(tfds, tmp_path, no_network):
    write_prepared_cifar10(tfds, tmp_path, {"train": 40})
    dataset = load("tfds:cifar10", 32, tfds_data_dir=str(tmp_path), test_fraction=0.25)
    assert len(dataset.train_images) == 30 and len(dataset.test_images) == 10
    assert set(dataset.test_labels) == set(range(10))


def test_describe_sources_offers_only_prepared_data(tfds, tmp_path, no_network):
    (tmp_path / "stl10").mkdir()  # a folder alone does not make a prepared dataset
    assert data.describe_sources(tfds_data_dir=str(tmp_path)) == ["digits"]
    write_prepared_cifar10(tfds, tmp_path, {"train": 1, "test": 1})
    assert data.describe_sources(tfds_data_dir=str(tmp_path)) == ["digits", "tfds:cifar10"]


def test_dataset_repr_is_short():
    dataset = Dataset("x", np.zeros((3, 4, 4, 3), np.uint8), None, None, None, [])
    assert repr(dataset) == "Dataset('x', train=3 unlabelled, image_size=4, classes=0)"


@pytest.mark.parametrize("backend, expected", [("jax", ("hide", (), "GPU")), ("tensorflow", ("grow", "GPU:0", True))])
def test_tensorflow_is_kept_from_reserving_the_gpu(monkeypatch, backend, expected):
    tf = pytest.importorskip("tensorflow")
    calls = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    hide = lambda devices, kind: calls.append(("hide", tuple(devices), kind))  # noqa: E731
    monkeypatch.setattr(tf.config, "set_visible_devices", hide)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: calls.append(("grow", gpu, on)))
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", backend)
    tfds_source._stop_tensorflow_reserving_gpu_memory()
    assert calls == [expected]
