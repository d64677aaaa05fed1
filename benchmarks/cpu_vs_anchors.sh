#!/usr/bin/env bash
# CPU speed, as ratios against the anchors run in the same command (../shared/BENCHMARKS.md).
# Runs each group twice, interleaved, so drift on a noisy machine hits both sides alike.
#   TensorFlow: the seeds' step through Keras model.fit (anchors/cpu/keras_backends.py)
#               vs our full trainer on TensorFlow (the CPU default)
#   JAX:        the bare jitted loop (anchors/bare_bench.py) vs our full trainer on JAX
#   PyTorch:    the bare PyTorch loop, no Keras (anchors/bare_bench_torch.py) vs our train step on
#               Keras's PyTorch backend (`python -m sslcore bench`, random batches like the bare loop)
#               and our full trainer on it (Trainer.fit: probe, metrics, kNN, checkpoints)
# Our side uses the anchors' SimCLR head (128 wide, tau 0.1: sslcore.bench.ANCHOR_SIMCLR_PARAMS) whatever the default.
# Usage: cpu_vs_anchors.sh [tensorflow] [jax] [torch]   (default: all three, in that order)
# Prints one JSON line per measurement: {"command": ..., "result": <the script's own JSON line>}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ANCHORS=${ANCHORS:-../shared/anchors}
export TF_CPP_MIN_LOG_LEVEL=3

measure() {  # run one benchmark command; tag its last output line with the command
  local line
  line=$("$@" 2>/dev/null | tail -1)
  printf '{"command": "%s", "result": %s}\n' "$*" "$line"
}

for section in ${*:-tensorflow jax torch}; do
  for _ in 1 2; do
    case $section in
      tensorflow)
        measure env KERAS_BACKEND=tensorflow $PY $ANCHORS/cpu/keras_backends.py 40 5
        measure env KERAS_BACKEND=tensorflow $PY benchmarks/trainer_throughput.py 10000 256 4 ;;
      jax)
        measure env KERAS_BACKEND=jax $PY $ANCHORS/bare_bench.py 32 256 60 float32
        measure env KERAS_BACKEND=jax $PY benchmarks/trainer_throughput.py 10000 256 3 ;;
      torch)
        measure $PY $ANCHORS/bare_bench_torch.py 32 256 60
        measure $PY -m sslcore bench --backend torch --steps 60 --param hidden_dim=128 --param temperature=0.1
        measure env KERAS_BACKEND=torch $PY benchmarks/trainer_throughput.py 10000 256 3 ;;
      *) echo "unknown section $section (tensorflow, jax or torch)" >&2; exit 2 ;;
    esac
  done
done
