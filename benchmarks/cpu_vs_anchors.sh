#!/usr/bin/env bash
# CPU speed, as ratios against the anchors run in the same command (../shared/BENCHMARKS.md).
# Runs each pair twice, interleaved, so drift on a noisy machine hits both sides alike.
#   TensorFlow: the seeds' step through Keras model.fit (anchors/cpu/keras_backends.py)
#               vs our full trainer on TensorFlow (the CPU default)
#   JAX:        the bare jitted loop (anchors/bare_bench.py) vs our full trainer on JAX
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ANCHORS=${ANCHORS:-../shared/anchors}
export TF_CPP_MIN_LOG_LEVEL=3
for round in 1 2; do
  KERAS_BACKEND=tensorflow $PY $ANCHORS/cpu/keras_backends.py 40 5 2>/dev/null | tail -1
  KERAS_BACKEND=tensorflow $PY benchmarks/trainer_throughput.py 10000 256 4 2>/dev/null | tail -1
done
for round in 1 2; do
  KERAS_BACKEND=jax $PY $ANCHORS/bare_bench.py 32 256 60 float32 2>/dev/null | tail -1
  KERAS_BACKEND=jax $PY benchmarks/trainer_throughput.py 10000 256 3 2>/dev/null | tail -1
done
