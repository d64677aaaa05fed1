"""A run's embeddings of any images, and writing them out: a CSV of vectors, or the Embedding Projector's files.

The embedding of an image is the run's encoder features (``encoder.keras``: RGB pixels 0–255 → features),
averaged over the image and its mirror image (``flip_average``). The encoders are convnets, which are not
left/right symmetric by construction: augmentation teaches them flip invariance only approximately, and a
briefly trained run hardly at all. Averaging the two makes the embedding exactly mirror-invariant for the
cost of a second forward pass, so a mirrored copy of a photo is a near-duplicate of it (see
``docs/audit.md`` for what it changes on CIFAR-10), and it is a mild test-time augmentation for labelling.

The audit (``sslcore.audit``) and few-label classification (``sslcore.labeling``) take their embeddings
from here, so all three agree on what "the run's embedding of a folder" is.

Projector export writes what https://projector.tensorflow.org and TensorBoard's projector load with no code:

    vectors.tsv               one row of tab-separated floats per image
    metadata.tsv              the image's path (one column, no header), or path + class with a header row
    sprite.png                every image as a thumbnail in one grid, row-major in the vectors' order
    projector_config.pbtxt    TensorBoard: ``tensorboard --logdir OUT`` → Projector tab
    projector_config.json     projector.tensorflow.org: host the folder and open ``?config=URL/projector_config.json``

The projector refuses sprites larger than 8,192 × 8,192 px, so at 32 px thumbnails at most 65,536 images fit;
a larger folder is exported as an evenly spread sample of that many (``ProjectorExport.sampled`` says so).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sslcore.data import FolderImages, load_folder
from sslcore.run import Run, embed_with

# The projector's sprite limit (MAX_SPRITE_IMAGE_SIZE_PX in its data-provider.ts).
MAX_SPRITE_PIXELS = 8192
THUMBNAIL_SIZE = 32
# Images per encoder call: bounds the float32 copy (4,096 × 32 × 32 × 3 × 4 B = 50 MB at 32 px).
EMBED_CHUNK = 4096
PREDICT_BATCH = 512


# ---------------------------------------------------------------------------------------------- embedding


def load_encoder(run):
    """The encoder of a finished run (a path or RunDir), kept in memory by ``sslcore.run``, or of a ``--model``."""
    return _embedder(run).encoder


def run_image_size(run) -> int:
    return _embedder(run).image_size


def _embedder(run):
    """A run folder as a Run; an encoder given with ``--model`` (``sslcore.model_encoder``) as it is."""
    from sslcore.model_encoder import ModelEncoder

    return run if isinstance(run, ModelEncoder) else Run(run)


def embed(encoder, images: np.ndarray, *, flip_average: bool = True, chunk: int = EMBED_CHUNK) -> np.ndarray:
    """float32 features (N, D) of uint8 images (N, S, S, 3), in chunks so memory stays bounded.

    With ``flip_average`` each row is the mean of the features of the image and of its mirror image.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be an (N, height, width, 3) array; got shape {images.shape}")
    size = encoder.input_shape[1]
    if images.shape[1:3] != (size, size):
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]} px but this run's encoder takes {size}x{size}")
    parts = []
    for start in range(0, len(images), chunk):
        batch = images[start:start + chunk].astype("float32")
        features = _predict(encoder, batch)
        if flip_average:
            features = (features + _predict(encoder, batch[:, :, ::-1])) / 2.0
        parts.append(features)
    if not parts:
        return np.zeros((0, int(encoder.output_shape[-1])), np.float32)
    return np.concatenate(parts)


def _predict(encoder, batch: np.ndarray) -> np.ndarray:
    return embed_with(encoder, np.ascontiguousarray(batch), PREDICT_BATCH)


def folder_path(data) -> str:
    """The directory of a ``folder:PATH`` source (a bare path is accepted too); other sources are refused."""
    text = os.fspath(data).strip() if isinstance(data, (str, os.PathLike)) else ""
    if not text:
        raise ValueError("Give the images as folder:PATH (a folder of images, or one subfolder of images per class)")
    kind, colon, rest = text.partition(":")
    if colon and kind == "folder":
        text = rest
    elif colon and kind in ("digits", "tfds") or text == "digits":
        raise ValueError(f"{text!r} is not a folder: audit, label and export work on folder:PATH sources")
    return os.path.abspath(os.path.expanduser(text))


def run_folder(run) -> str | None:
    """The folder a run was trained on, when its data is a ``folder:`` source (the app's default to audit)."""
    from sslcore.runs import RunDir

    run_dir = run if hasattr(run, "config_path") else RunDir(run)
    data = str(run_dir.config().get("data", ""))
    return folder_path(data) if data.startswith("folder:") else None


@dataclass(repr=False, eq=False)
class FolderEmbeddings:
    """A folder's decoded images and their embeddings, row for row; ``paths`` are relative to ``root``."""

    root: str
    folder: FolderImages
    features: np.ndarray
    flip_average: bool
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        return self.folder.paths

    @property
    def images(self) -> np.ndarray:
        return self.folder.images

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.folder.skipped

    def class_of(self, index: int) -> str | None:
        if self.folder.labels is None:
            return None
        return self.folder.class_names[int(self.folder.labels[index])]

    def __repr__(self) -> str:
        return f"FolderEmbeddings({self.root!r}, {len(self.paths)} images, dim={self.features.shape[1]})"


def embed_folder(run, data, *, flip_average: bool = True, cache_dir: str | None = None) -> FolderEmbeddings:
    """Decode a folder (``sslcore.data.load_folder``, cached, unreadable files skipped and listed) and embed it."""
    import time

    root = folder_path(data)
    encoder = load_encoder(run)
    started = time.perf_counter()
    folder = load_folder(root, run_image_size(run), skip_bad_images=True, cache_dir=cache_dir)
    decoded = time.perf_counter()
    features = embed(encoder, folder.images, flip_average=flip_average)
    return FolderEmbeddings(root=root, folder=folder, features=features, flip_average=flip_average,
                            seconds={"decode": decoded - started, "embed": time.perf_counter() - decoded})


# ---------------------------------------------------------------------------------------------- CSV


def write_vectors_csv(path, paths: list[str], features: np.ndarray) -> Path:
    """``path,f0,f1,...``: one row per image, its relative path then its embedding."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path"] + [f"f{i}" for i in range(features.shape[1])])
        for name, row in zip(paths, features):
            writer.writerow([name] + [f"{value:.6g}" for value in row])
    return path


# ---------------------------------------------------------------------------------------------- projector


@dataclass
class ProjectorExport:
    out: str
    files: dict[str, str]
    images: int            # points written
    total: int             # images in the folder
    sampled: bool          # True when the sprite limit made us keep a sample
    thumbnail_size: int
    sprite_pixels: tuple[int, int]


def max_sprite_images(thumbnail_size: int = THUMBNAIL_SIZE) -> int:
    per_side = MAX_SPRITE_PIXELS // thumbnail_size
    return per_side * per_side


def write_projector(out, features: np.ndarray, images: np.ndarray, metadata: dict[str, list[str]], *,
                    thumbnail_size: int = THUMBNAIL_SIZE, max_images: int | None = None) -> ProjectorExport:
    """Write the Embedding Projector's files for ``features`` (N, D), their ``images`` and metadata columns.

    ``metadata`` maps column name → one string per image (e.g. ``{"path": [...], "class": [...]}``). More than
    ``max_images`` (default: as many as the 8,192 px sprite holds) keeps an evenly spread, ordered sample.
    """
    features = np.asarray(features, dtype=np.float32)
    total = len(features)
    if total < 2:
        raise ValueError("The projector needs at least 2 images")
    if not 8 <= thumbnail_size <= 256:
        raise ValueError(f"thumbnail_size must be between 8 and 256 px; got {thumbnail_size}")
    limit = max_sprite_images(thumbnail_size)
    cap = min(limit, max_images) if max_images else limit
    keep = np.arange(total)
    if total > cap:
        keep = np.unique(np.linspace(0, total - 1, cap).round().astype(int))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"vectors": out / "vectors.tsv", "metadata": out / "metadata.tsv", "sprite": out / "sprite.png",
             "pbtxt": out / "projector_config.pbtxt", "json": out / "projector_config.json"}
    np.savetxt(files["vectors"], features[keep], fmt="%.6g", delimiter="\t")
    _write_metadata(files["metadata"], {name: [values[i] for i in keep] for name, values in metadata.items()})
    sprite = sprite_image(np.asarray(images)[keep], thumbnail_size)
    sprite.save(files["sprite"], optimize=True)
    _write_configs(files, len(keep), features.shape[1], thumbnail_size)
    return ProjectorExport(out=str(out), files={k: str(v) for k, v in files.items()}, images=int(len(keep)),
                           total=int(total), sampled=bool(len(keep) < total), thumbnail_size=thumbnail_size,
                           sprite_pixels=sprite.size)


def _write_metadata(path: Path, columns: dict[str, list[str]]) -> None:
    """One column: the values alone (the projector reads a tab in the first line as 'this is a header')."""
    clean = lambda value: str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
    names = list(columns)
    rows = zip(*[columns[name] for name in names])
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        if len(names) > 1:
            handle.write("\t".join(names) + "\n")
        for row in rows:
            handle.write("\t".join(clean(value) for value in row) + "\n")


def sprite_image(images: np.ndarray, thumbnail_size: int = THUMBNAIL_SIZE) -> Image.Image:
    """All images as thumbnails in a square grid, row-major, white where the grid has no image."""
    count = len(images)
    per_row = max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / per_row)
    sprite = Image.new("RGB", (per_row * thumbnail_size, rows * thumbnail_size), (255, 255, 255))
    for index, pixels in enumerate(images):
        thumb = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
        if thumb.size != (thumbnail_size, thumbnail_size):
            thumb = thumb.resize((thumbnail_size, thumbnail_size), Image.Resampling.BICUBIC)
        row, column = divmod(index, per_row)
        sprite.paste(thumb, (column * thumbnail_size, row * thumbnail_size))
    return sprite


def _write_configs(files: dict[str, Path], count: int, dim: int, thumbnail_size: int) -> None:
    names = {key: path.name for key, path in files.items()}
    files["pbtxt"].write_text(
        "embeddings {\n"
        '  tensor_name: "sslcore"\n'
        f'  tensor_path: "{names["vectors"]}"\n'
        f'  metadata_path: "{names["metadata"]}"\n'
        "  sprite {\n"
        f'    image_path: "{names["sprite"]}"\n'
        f"    single_image_dim: {thumbnail_size}\n"
        f"    single_image_dim: {thumbnail_size}\n"
        "  }\n"
        "}\n")
    standalone = {"embeddings": [{
        "tensorName": "sslcore", "tensorShape": [count, dim], "tensorPath": names["vectors"],
        "metadataPath": names["metadata"],
        "sprite": {"imagePath": names["sprite"], "singleImageDim": [thumbnail_size, thumbnail_size]}}]}
    files["json"].write_text(json.dumps(standalone, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- one call


def export_folder(run, data, out, *, format: str = "projector", flip_average: bool = True,
                  thumbnail_size: int = THUMBNAIL_SIZE, max_images: int | None = None) -> dict[str, Any]:
    """Embed a folder with a run and write ``format`` ("projector" or "csv") into ``out``; returns a summary.

    ``out`` is a folder for "projector" and a file (or a folder, then ``embeddings.csv`` in it) for "csv".
    Never writes inside the image folder itself.
    """
    if format not in ("projector", "csv"):
        raise ValueError(f"Unknown export format {format!r}; choose projector or csv")
    embedded = embed_folder(run, data, flip_average=flip_average)
    check_outside(embedded.root, out, what="the export")
    summary = {"images": len(embedded.paths), "unreadable": len(embedded.skipped), "dim": int(embedded.features.shape[1]),
               "flip_average": flip_average, "format": format}
    if format == "csv":
        target = Path(out)
        if target.is_dir() or not target.suffix:
            target = target / "embeddings.csv"
        written = write_vectors_csv(target, embedded.paths, embedded.features)
        return {**summary, "files": {"csv": str(written)}}
    metadata = {"path": list(embedded.paths)}
    if embedded.folder.labels is not None:
        metadata["class"] = [embedded.class_of(i) for i in range(len(embedded.paths))]
    export = write_projector(out, embedded.features, embedded.images, metadata, thumbnail_size=thumbnail_size,
                             max_images=max_images)
    return {**summary, "files": export.files, "exported": export.images, "sampled": export.sampled,
            "sprite_pixels": list(export.sprite_pixels), "thumbnail_size": export.thumbnail_size}


def check_outside(root: str, target, *, what: str) -> None:
    """Refuse to write ``target`` inside the user's image folder: sslcore never changes the folder it reads."""
    root_real = os.path.realpath(root)
    target_real = os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(target))))
    if target_real == root_real or target_real.startswith(root_real.rstrip(os.sep) + os.sep):
        raise ValueError(f"Refusing to write {what} to {target}: it is inside the image folder {root}, which sslcore "
                         "never modifies. Choose a folder outside it.")

