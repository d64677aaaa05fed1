#!/usr/bin/env bash
# GPU speed, as ratios against the anchors run in the same command (../shared/BENCHMARKS.md, H100 table).
# Each pair runs our code and the bare loop it is compared with, one after the other, same size and batch:
#   jax:    the seeds' step as a bare jitted loop (anchors/bare_bench.py) vs our train step (`sslcore bench`:
#           augmentation, encoder, method, online probe, metrics) and our full trainer (Trainer.fit on 50,000
#           images: probe, host reads, kNN, checkpoints), fp32 and mixed bf16
#   resnet: the bare Keras ResNet-18 loop (anchors/resnet_bench.py) vs `sslcore bench --encoder resnet18`
#   torch:  the bare PyTorch loop (anchors/bare_bench_torch.py) vs our step on Keras's PyTorch backend
#   cifar:  20 epochs of SimCLR (sslcore's defaults and the seeds' recipe) on CIFAR-10, held-out kNN / linear
#           (benchmarks/recipe_cifar.py; the data where audit_cifar.py looks for it)
# Our side uses the anchors' SimCLR head (128 wide, tau 0.1: sslcore.bench.ANCHOR_SIMCLR_PARAMS).
# Usage: gpu_vs_anchors.sh [jax] [resnet] [torch] [cifar]   (default: all four, in that order)
# STEPS (default 300) sets the timed steps of each step benchmark; TIMEOUT (default 240) caps each command.
# Prints one JSON line per result: {"command": ..., "seconds": ..., "result": <a JSON line the script printed>}.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ANCHORS=${ANCHORS:-../shared/anchors}
STEPS=${STEPS:-300}
TIMEOUT=${TIMEOUT:-240}
HEAD=(--param hidden_dim=128 --param temperature=0.1)
export TF_CPP_MIN_LOG_LEVEL=3

measure() {  # run one benchmark command under a time limit; tag each JSON line it prints with the command
  local lines line started=$SECONDS
  lines=$(timeout "$TIMEOUT" "$@" 2>/tmp/gpu_vs_anchors.err | grep '^{')
  [[ -n $lines ]] || lines="{\"error\": \"no result: $(tail -1 /tmp/gpu_vs_anchors.err | tr -d '"\\' | cut -c1-300)\"}"
  while IFS= read -r line; do
    printf '{"command": "%s", "seconds": %d, "result": %s}\n' "$*" $((SECONDS - started)) "$line"
  done <<< "$lines"
}

for section in ${*:-jax resnet torch cifar}; do
  case $section in
    jax)
      measure env KERAS_BACKEND=jax $PY $ANCHORS/bare_bench.py 32 512 "$STEPS" float32
      measure $PY -m sslcore bench --backend jax --batch-size 512 --steps "$STEPS" "${HEAD[@]}"
      measure env KERAS_BACKEND=jax $PY $ANCHORS/bare_bench.py 32 512 "$STEPS" mixed_bfloat16
      measure $PY -m sslcore bench --backend jax --batch-size 512 --steps "$STEPS" --precision bf16 "${HEAD[@]}"
      measure env KERAS_BACKEND=jax $PY benchmarks/trainer_throughput.py 50000 512 3 ;;
    resnet)
      measure env KERAS_BACKEND=jax $PY $ANCHORS/resnet_bench.py $((STEPS / 3))
      measure $PY -m sslcore bench --backend jax --encoder resnet18 --batch-size 512 --steps $((STEPS / 3)) --precision bf16
      measure $PY -m sslcore bench --backend jax --encoder resnet18 --batch-size 512 --steps $((STEPS / 3)) ;;
    torch)
      measure $PY $ANCHORS/bare_bench_torch.py 32 512 "$STEPS"
      measure $PY -m sslcore bench --backend torch --batch-size 512 --steps "$STEPS" "${HEAD[@]}" ;;
    cifar)
      measure env KERAS_BACKEND=jax $PY benchmarks/recipe_cifar.py "$(mktemp -d)" --epochs 20 --recipes defaults,seeds ;;
    *) echo "unknown section $section (jax, resnet, torch or cifar)" >&2; exit 2 ;;
  esac
done
