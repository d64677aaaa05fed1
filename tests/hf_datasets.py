"""Parquet image datasets written the way `datasets` (push_to_hub / to_parquet) writes them, for the hf: tests.

What the loader depends on, and what `datasets` produces: the image column is a struct{bytes: binary, path: string}
of encoded PNG (or JPEG) bytes, the label an int64, and the schema metadata key b"huggingface" holds
{"info": {"features": {...}}} with ``{"_type": "Image"}`` and ``{"names": [...], "_type": "ClassLabel"}``.
The `datasets` package itself is not needed to write that.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CLASSES = ["red", "green", "blue"]


def make_images(count: int, *, classes: int = len(CLASSES), size: int = 12, seed: int = 0,
                fmt: str = "PNG") -> tuple[list[bytes], np.ndarray]:
    """``count`` encoded images whose dominant colour is their class, and their labels (round-robin)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    encoded = []
    for label in labels:
        pixels = rng.integers(0, 60, (size, size + 4, 3), dtype=np.uint8)   # not square: exercises the crop
        pixels[..., label % 3] += 180
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        encoded.append(buffer.getvalue())
    return encoded, labels.astype(np.int64)


def parquet_bytes(images: list[bytes], labels: np.ndarray | None = None, class_names: list[str] | None = None, *,
                  image_column: str = "img", label_column: str = "label", features: bool = True,
                  extra: dict[str, list] | None = None) -> bytes:
    """One parquet file as `datasets` writes it; ``labels=None`` for an unlabelled split (STL-10's has -1 labels,
    pass those explicitly), ``features=False`` for a file without the b"huggingface" metadata."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {image_column: pa.array([{"bytes": blob, "path": None} for blob in images], type=image_type)}
    described = {image_column: {"_type": "Image"}}
    if labels is not None:
        columns[label_column] = pa.array(np.asarray(labels, dtype=np.int64))
        described[label_column] = {"names": list(class_names or CLASSES), "_type": "ClassLabel"}
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values)
        described[name] = {"dtype": str(columns[name].type), "_type": "Value"}
    table = pa.table(columns)
    if features:
        table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": described}}).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=16)   # several row groups, like a big file, in a tiny one
    return buffer.getvalue()


def text_parquet_bytes(rows: int = 4) -> bytes:
    """A dataset with no image column at all (a text classification set)."""
    table = pa.table({"text": [f"sentence {i}" for i in range(rows)], "label": pa.array(np.arange(rows) % 2)})
    table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": {
        "text": {"dtype": "string", "_type": "Value"},
        "label": {"names": ["neg", "pos"], "_type": "ClassLabel"}}}}).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def split_file(split: str, count: int, *, seed: int, labelled: bool = True, **kwargs) -> bytes:
    images, labels = make_images(count, seed=seed)
    return parquet_bytes(images, labels if labelled else None, **kwargs)
