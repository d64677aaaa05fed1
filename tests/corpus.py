"""The audit corpus: colourised digits in a flat folder with known injected duplicates, outliers and bad files
(tests/test_audit.py, test_export.py and test_labeling.py check against it). The folder and a tiny run trained on it
are built once per session by the ``audit_corpus`` fixture in tests/conftest.py."""
import hashlib
import os
import shutil

import numpy as np
from PIL import Image, ImageFilter

from sslcore import audit
from tests.helpers import SIMCLR_PINNED, tiny_config

# SimCLR's shipped recipe written out (tests/test_audit.py checks it is the default): test_audit.py audits with a run
# trained on it, the run a user gets, and it does not move unnoticed when a default does. The shared run keeps the
# seeds' pin: on it, test_labeling.py's 5-examples-per-class kNN scored 0.495 against its bar of 0.5.
SHIPPED_SIMCLR = {**SIMCLR_PINNED, "temperature": 0.05, "hidden_dim": 512}

SIZE = 64            # files are written at 64 px; the run reads them at 32
CORPUS_DIGITS = 600  # plain images in the audited folder
PAPER, INK = (0, 40), (180, 255)  # colour ranges: every digit a little different, all clearly digits
CROP_BOX = (5, 3, 57, 55)  # 81% of each side, off-centre
OUTLIERS = ("outlier_noise.png", "outlier_stripes.png", "outlier_checker.png")


# ---------------------------------------------------------------------------------------------- the corpus


def digit_pictures(count=None, offset=0, indices=None):
    """(uint8 (N, SIZE, SIZE, 3) colourised digits, labels): each digit in its own ink and paper colours."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = np.arange(len(digits.images))[offset:offset + count if count else None] if indices is None else indices
    rng = np.random.default_rng(offset)
    pictures = []
    for index in chosen:
        gray = Image.fromarray((digits.images[index] * 255 / 16).astype(np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
        ink = np.asarray(gray, np.float32)[..., None] / 255.0
        paper, colour = rng.uniform(*PAPER, 3), rng.uniform(*INK, 3)
        pictures.append((paper + ink * (colour - paper)).round().astype(np.uint8))
    return np.stack(pictures), digits.target[chosen]


def save(picture, path, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path, **options)


def edited_file(picture, edit, path):
    """Write ``picture`` after ``edit`` as a user's copy would be: crops and resizes change the file's size."""
    image = Image.fromarray(picture)
    if edit == "crop":
        image.crop(CROP_BOX).save(path)
    elif edit == "resize":
        image.resize((40, 40), Image.BILINEAR).save(path)      # a smaller copy
    elif edit == "jpeg":
        image.save(path.with_suffix(".jpg"), quality=30)       # heavy re-compression
        return path.with_suffix(".jpg")
    elif edit == "flip":
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path)
    elif edit == "brightness":
        Image.fromarray(np.clip(picture * 1.25, 0, 255).astype(np.uint8)).save(path)
    return path


def outlier_pictures():
    rng = np.random.default_rng(1)
    noise = np.kron(rng.integers(0, 256, (SIZE // 8, SIZE // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    stripes = np.zeros((SIZE, SIZE, 3), np.uint8)
    stripes[:, ::8] = (255, 40, 40)
    stripes[:, 1::8] = (255, 40, 40)
    stripes[::16] = (40, 220, 40)
    checker = ((np.indices((SIZE, SIZE)).sum(axis=0) // 8) % 2 * 255).astype(np.uint8)
    checker = np.stack([checker, 255 - checker, np.full_like(checker, 128)], axis=-1)
    return dict(zip(OUTLIERS, (noise, stripes, checker)))


def distinct_digits(count, min_difference=1.5):
    """Indices of ``count`` digits no two of which are near-identical (mean |difference| ≥ 1.5 of 16 grey levels):
    the digits data set has a few pairs that are, and the corpus should hold no duplicates but the injected ones."""
    from sklearn.datasets import load_digits

    flat = load_digits().images.reshape(-1, 64)
    chosen = []
    for index in range(len(flat)):
        if not chosen or np.abs(flat[chosen] - flat[index]).mean(axis=1).min() >= min_difference:
            chosen.append(index)
        if len(chosen) == count:
            return np.array(chosen)
    raise AssertionError("not enough distinct digits")


def make_corpus(root):
    """A flat folder; returns what was injected: {edit: (original, copy)}, the exact copy pair, the outliers,
    and which digit (index into sklearn's digits) each digit_NNNN.png shows."""
    indices = distinct_digits(CORPUS_DIGITS)
    pictures, _ = digit_pictures(indices=indices)
    for index, picture in enumerate(pictures):
        save(picture, root / f"digit_{index:04d}.png")
    injected = {}
    for n, edit in enumerate(audit.EDITS):
        original = f"digit_{10 + 37 * n:04d}.png"
        copy = edited_file(pictures[10 + 37 * n], edit, root / f"copy_{edit}.png")
        injected[edit] = (original, copy.name)
    shutil.copyfile(root / "digit_0003.png", root / "exact_copy_of_0003.png")
    for name, picture in outlier_pictures().items():
        save(picture, root / name)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    # A palette-mode GIF: decoded like any other image, not reported as unreadable.
    gif = digit_pictures(indices=[1796])[0][0]  # a digit not otherwise in the folder
    Image.fromarray(gif).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.gif")
    (root / "notes.txt").write_text("not an image: ignored by the audit, kept by --write-clean\n")
    return {"edits": injected, "exact": ("digit_0003.png", "exact_copy_of_0003.png"), "outliers": OUTLIERS,
            "digits": {f"digit_{n:04d}.png": int(index) for n, index in enumerate(indices)}}


def folder_digest(root):
    """Every file's path, bytes and mtime: "unchanged" means byte for byte and untouched."""
    digest = hashlib.sha256()
    for directory, subdirs, names in sorted(os.walk(root)):
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
            digest.update(str(os.stat(path).st_mtime_ns).encode())
    return digest.hexdigest()


def train_corpus_run(root, run, method_params):
    """A SimCLR run trained on the folder ``root`` into ``run``, as a user would (3 epochs, seconds)."""
    from sslcore.trainer import Trainer

    config = tiny_config(data=f"folder:{root}", skip_bad_images=True, epochs=3, encoder_width=32,
                         method="simclr", method_params=method_params)
    Trainer(config, run).fit()
    return run


def build_corpus_and_run(base):
    """The audited folder under ``base`` and the shared run trained on it (the seeds' SimCLR settings, pinned)."""
    root = base / "photos"
    injected = make_corpus(root)
    return root, train_corpus_run(root, base / "run", SIMCLR_PINNED), injected


# ---------------------------------------------------------------------------------------------- quality issues


QUALITY_DIGITS = 80  # clean images in the quality folder


def quality_issue_pictures(picture):
    """One file's worth of each quality issue, made from the clean digit ``picture``: {check: (file name, PIL image)}."""
    values = picture.astype(np.float32)
    flat = np.random.default_rng(2).normal(128, 2, picture.shape).clip(0, 255).astype(np.uint8)   # a blank scan
    wide = np.zeros((SIZE, SIZE * 5 // 2, 3), np.uint8)
    wide[:, :SIZE] = wide[:, -SIZE:] = picture
    return {
        "dark": ("issue_dark.png", Image.fromarray((values * 0.15).round().astype(np.uint8))),
        "light": ("issue_light.png", Image.fromarray((255 - (255 - values) * 0.15).round().astype(np.uint8))),
        "blurry": ("issue_blurry.png", Image.fromarray(picture).filter(ImageFilter.GaussianBlur(5))),
        "low_information": ("issue_blank.png", Image.fromarray(flat)),
        "odd_size": ("issue_tiny.png", Image.fromarray(picture).resize((SIZE // 4, SIZE // 4), Image.Resampling.BOX)),
        "odd_aspect_ratio": ("issue_wide.png", Image.fromarray(wide)),
        "grayscale": ("issue_gray.png", Image.fromarray(picture).convert("L")),
    }


def make_quality_folder(root):
    """A flat folder of QUALITY_DIGITS clean colourised digits plus one file per quality issue, each made from a
    digit not otherwise in the folder; returns {check: file name}."""
    pictures, _ = digit_pictures(QUALITY_DIGITS + 1, offset=900)
    for index, picture in enumerate(pictures[:-1]):
        save(picture, root / f"clean_{index:03d}.png")
    injected = {}
    for check, (name, image) in quality_issue_pictures(pictures[-1]).items():
        image.save(root / name)
        injected[check] = name
    return injected
