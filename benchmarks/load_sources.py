"""How long loading CIFAR-10 (50,000 images at 32 px) takes, and its peak memory, per data source (docs/benchmarks.md).

    python benchmarks/load_sources.py [--size 32] [--work DIR]

The same 50,000 images (the training split in /work/shared/data/cifar10_train_jpeg.npz, JPEG bytes) as

* ``hf:``     -- one parquet file written the way `datasets` writes it (the JPEG bytes kept as they are), put in a local
               Hub cache through the fake Hub of tests/fake_hub.py, then loaded with HF_HUB_OFFLINE=1: no network;
* ``folder:`` -- the class-per-subfolder folder /work/shared/tools/cifar10-to-folder.py writes;
* ``tfds:cifar10`` -- only if TensorFlow Datasets has it prepared here (else one line says it was skipped).

Each load runs in a fresh process, twice: the first decodes, the second starts from sslcore's cache of decoded
arrays. ``peak_mb`` is that process's peak resident memory (VmHWM), ``before_mb`` its resident memory just before
the load (Python, numpy, pyarrow, huggingface_hub, Pillow), so ``peak_mb - before_mb`` is what the load itself
added at its worst. The decoded array is 50,000 x 32 x 32 x 3 bytes = 154 MB. One JSON line per measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = "/work/shared"
NPZ = os.path.join(SHARED, "data", "cifar10_train_jpeg.npz")
REPO_ID = "bench/cifar10"
PARQUET_PATH = "plain_text/train-00000-of-00001.parquet"

# Memory is read from /proc/self/status: VmHWM is this process's own peak. getrusage's ru_maxrss (RUSAGE_SELF, and
# RUSAGE_CHILDREN in the parent) is not: Linux carries the parent's peak over into a child across fork and exec.
ONE_LOAD = """
import json, sys, time
sys.path.insert(0, {root!r})
def status_mb(key):
    with open("/proc/self/status") as f:
        return round(int(next(line for line in f if line.startswith(key + ":")).split()[1]) / 1024)
import numpy, pyarrow.parquet, huggingface_hub, PIL.Image
from sslcore.data import load
before_mb = status_mb("VmRSS")
start = time.perf_counter()
data = load({source!r}, {size})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": round(seconds, 2), "peak_mb": status_mb("VmHWM"), "before_mb": before_mb,
                  "train": len(data.train_images), "test": 0 if data.test_images is None else len(data.test_images)}}))
"""


def write_parquet(path: str) -> int:
    """CIFAR-10's training split as `datasets` would store it: img = struct{bytes, path}, label = ClassLabel."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    archive = np.load(NPZ)
    jpeg, offsets, labels, classes = archive["jpeg"], archive["offsets"], archive["labels"], archive["classes"]
    blobs = [jpeg[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(labels))]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"img": pa.array([{"bytes": b, "path": f"{i:05d}.jpg"} for i, b in enumerate(blobs)], type=image_type),
                      "label": pa.array(labels.astype(np.int64))})
    features = {"img": {"_type": "Image"}, "label": {"names": [str(c) for c in classes], "_type": "ClassLabel"}}
    table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, row_group_size=1000)   # `datasets` caps row groups at 100 MB; 1,000 rows = 0.9 MB
    return len(labels)


def fill_hub_cache(parquet: str, hub_cache: str) -> None:
    """Serve the parquet file from the fake Hub and download it once into ``hub_cache``, as a first online run would."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import huggingface_hub
    import huggingface_hub.constants as constants
    from fake_hub import FakeHub

    with open(parquet, "rb") as handle:
        content = handle.read()
    with FakeHub() as hub:
        hub.add_repo(REPO_ID, {PARQUET_PATH: content, "README.md": b"# CIFAR-10 (benchmark copy)\n"},
                     repo_type="datasets")
        constants.HF_HUB_DISABLE_XET = True
        constants.ENDPOINT = hub.url
        constants.HUGGINGFACE_CO_URL_TEMPLATE = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        huggingface_hub.hf_hub_download(REPO_ID, PARQUET_PATH, repo_type="dataset", revision="main",
                                        cache_dir=hub_cache)


def measure(source: str, size: int, env: dict) -> dict:
    script = ONE_LOAD.format(root=ROOT, source=source, size=size)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{source}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="sslcore-load-bench-")
    common = {"images": 50000, "image_size": args.size, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    try:
        parquet = os.path.join(work, "parquet", PARQUET_PATH)
        write_parquet(parquet)
        hub_cache = os.path.join(work, "hf", "hub")
        fill_hub_cache(parquet, hub_cache)
        folder = os.path.join(work, "cifar10-folder")
        subprocess.run([sys.executable, os.path.join(SHARED, "tools", "cifar10-to-folder.py"), folder], check=True,
                       capture_output=True)
        env = {**os.environ, "SSLCORE_CACHE": os.path.join(work, "sslcore-cache"), "HF_HOME": os.path.join(work, "hf"),
               "HF_HUB_CACHE": hub_cache, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ROOT}
        sources = {"hf": (f"hf:{REPO_ID}", {"stored_mb": round(os.path.getsize(parquet) / 2**20, 1),
                                             "stored_as": "one parquet file of JPEG bytes, read from the local Hub cache"}),
                   "folder": (f"folder:{folder}", {"stored_mb": round(sum(os.path.getsize(os.path.join(d, f))
                                                                          for d, _, fs in os.walk(folder) for f in fs) / 2**20, 1),
                                                   "stored_as": "50,000 JPEG files in 10 class folders"})}
        for kind, (source, stored) in sources.items():
            for run, what in (("first", "decode"), ("second", "sslcore cache")):
                report(source=kind, load=run, what=what, **measure(source, args.size, env), **stored, **common)
        sys.path.insert(0, ROOT)
        from sslcore.data.tfds_source import _tfds_is_prepared, _tfds_root

        if _tfds_is_prepared("cifar10", None):
            for run in ("first", "second"):
                report(source="tfds", load=run, **measure("tfds:cifar10", args.size, env), **common)
        else:
            report(source="tfds", skipped=f"cifar10 is not prepared in the TFDS data directory {_tfds_root(None)} "
                                          "and this machine has no internet to download it", **common)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
