"""What one ZeroGPU chunk pays before it trains: start-up as a share of a 60-second GPU call, on CPU.

A run on a ZeroGPU Space is trained in chunks; each chunk resumes the run's last checkpoint, so every
chunk pays again for the process (or fork), the data, the model build and the restore before its first
step. Measured here, on Keras's PyTorch backend (the only one ZeroGPU attaches a GPU to), for one chunk
of an existing run, three ways:

  fresh   a new Python process (interpreter and imports included), as ``train --resume`` runs
  forked  forked from a parent that has already imported keras and sslcore, as ZeroGPU forks the
          Gradio process for each @spaces.GPU call
  cli     (digits only) the real ``python -m sslcore train --resume --max-steps 1``, start to exit:
          a one-step chunk's whole overhead, as a cross-check of the split figures

Cases: the digits default (``TrainConfig()``), and a CIFAR-10-sized default: 50,000 + 10,000 uint8
images at 32 px (random pixels; start-up does not depend on them), read from an uncompressed .npz as a
folder source's decoded cache is (``sslcore/data/cache.py``); the folder's per-file fingerprint is not
included. Each chunk trains one step; the run is created first by a separate process (not timed).

Prints one JSON line per chunk measured, then one summary line per case and way.
Usage: chunk_startup.py [REPEATS]   (default 3)
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ["KERAS_BACKEND"] = "torch"   # before anything imports keras: ZeroGPU's only backend
CHUNK_SECONDS = 60.0


def chunk(run_dir: str, data_file: str | None, spawned: float, max_steps: int = 1, resume: bool = True) -> dict:
    """Train ``max_steps`` steps of the run in ``run_dir``; returns the wall-clock time at which each stage ended."""
    marks = {"spawned": spawned, "started": time.time()}
    import numpy as np

    from sslcore.config import TrainConfig
    from sslcore.data import Dataset, load
    from sslcore.runs import RunDir
    from sslcore.trainer import Trainer
    marks["imported"] = time.time()

    run = RunDir(run_dir)
    config = TrainConfig.from_run_config(run.config()) if resume else _case_config(data_file)
    if data_file:
        with np.load(data_file) as arrays:
            dataset = Dataset(name="cifar10-sized", class_names=[str(i) for i in range(10)],
                              **{key: arrays[key] for key in arrays.files})
    else:
        dataset = load(config.data, config.image_size, test_fraction=config.test_fraction, seed=config.seed)
    marks["data_loaded"] = time.time()
    trainer = Trainer(config, run_dir, dataset=dataset, callbacks=[_Marks(marks)])
    trainer.prepare()
    marks["built"] = time.time()
    trainer.fit(resume=resume, max_steps=max_steps)
    return marks


class _Marks:
    """Timestamps of the loop's start (checkpoint restored, step ready), first step and end (checkpoint saved)."""

    def __init__(self, marks: dict):
        self.marks = marks

    def on_train_begin(self, info): self.marks["ready"] = time.time()
    def on_step_end(self, row): self.marks.setdefault("first_step_done", time.time())
    def on_epoch_end(self, row): self.marks["epoch_ended"] = True
    def on_train_end(self, summary): self.marks["saved"] = time.time()


def _case_config(data_file: str | None):
    from sslcore.config import TrainConfig

    # The defaults, as the Train page starts a run; the CIFAR-sized case names its data only for the record.
    return TrainConfig() if data_file is None else TrainConfig(data="folder:cifar10-sized")


def stages(marks: dict) -> dict:
    """Seconds per stage, and the start-up (spawn or fork → first step can start) as a share of a chunk."""
    between = lambda a, b: round(marks[b] - marks[a], 3)
    startup = marks["ready"] - marks["spawned"]
    return {"interpreter_s": between("spawned", "started"), "imports_s": between("started", "imported"),
            "data_s": between("imported", "data_loaded"), "build_s": between("data_loaded", "built"),
            "restore_s": between("built", "ready"), "startup_s": round(startup, 3),
            "share_of_60s_chunk": round(startup / CHUNK_SECONDS, 4),
            "first_step_s": between("ready", "first_step_done"), "save_s": between("first_step_done", "saved"),
            "epoch_ended_in_chunk": marks.get("epoch_ended", False)}


def _child_main(argv: list[str]) -> None:
    run_dir, data_file, spawned, resume = argv[0], argv[1] or None, float(argv[2]), argv[3] == "resume"
    print(json.dumps(chunk(run_dir, data_file, spawned, max_steps=1, resume=resume)))


def fresh(run_dir: str, data_file: str | None, resume: bool = True) -> dict:
    spawned = time.time()
    result = subprocess.run([sys.executable, __file__, "--chunk", run_dir, data_file or "", repr(spawned),
                             "resume" if resume else "start"], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _forked_target(queue, run_dir, data_file, spawned):
    queue.put(chunk(run_dir, data_file, spawned))


def forked(run_dir: str, data_file: str | None) -> dict:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    spawned = time.time()
    process = context.Process(target=_forked_target, args=(queue, run_dir, data_file, spawned))
    process.start()
    marks = queue.get(timeout=600)
    process.join()
    return marks


def cli(run_dir: str) -> dict:
    """The real command, start to exit, for a one-step chunk."""
    spawned = time.time()
    subprocess.run([sys.executable, "-m", "sslcore", "train", "--resume", "--max-steps", "1", "--no-progress",
                    "--out", run_dir], capture_output=True, text=True, check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": ROOT})
    total = time.time() - spawned
    return {"one_step_chunk_s": round(total, 3), "share_of_60s_chunk": round(total / CHUNK_SECONDS, 4)}


def cifar_sized_file(folder: str) -> str:
    """50,000 training + 10,000 test images of 32×32×3 (CIFAR-10's sizes) as an uncompressed .npz."""
    import numpy as np

    from sslcore.bench import synthetic_dataset

    train, test = synthetic_dataset(32, 50000, seed=0), synthetic_dataset(32, 10000, seed=1)
    path = os.path.join(folder, "cifar10-sized.npz")
    np.savez(path, train_images=train.train_images, train_labels=train.train_labels,
             test_images=test.train_images, test_labels=test.train_labels)
    return path


def main(repeats: int) -> None:
    import sslcore.trainer  # noqa: F401  the warm parent of the forked chunks: keras and sslcore imported, as in the app

    summaries = []
    with tempfile.TemporaryDirectory(prefix="chunk-startup-") as folder:
        cases = {"digits": None, "cifar10-sized": cifar_sized_file(folder)}
        for case, data_file in cases.items():
            run_dir = os.path.join(folder, case)
            fresh(run_dir, data_file, resume=False)  # creates the run and its first checkpoint (not timed)
            results = {"fresh": [], "forked": [], "cli": []}
            for _ in range(repeats):  # interleaved, so drift on a shared machine hits every way alike
                results["fresh"].append(stages(fresh(run_dir, data_file)))
                results["forked"].append(stages(forked(run_dir, data_file)))
                if data_file is None:
                    results["cli"].append(cli(run_dir))
            for way, rows in results.items():
                for row in rows:
                    print(json.dumps({"case": case, "way": way, **row}), flush=True)
                if rows:
                    summaries.append({"case": case, "way": way, "repeats": len(rows),
                                      **{key: _median([row[key] for row in rows]) for key in rows[0]
                                         if isinstance(rows[0][key], float)}})
    import keras
    import torch
    for summary in summaries:
        print(json.dumps({"script": "chunk_startup.py", "summary": "median", **summary, "backend": keras.backend.backend(),
                          "torch": torch.__version__, "keras": keras.__version__, "cpu_cores": os.cpu_count()}))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return round(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2, 4)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--chunk"]:
        _child_main(sys.argv[2:])
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
