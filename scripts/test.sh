#!/usr/bin/env bash
# The project's test command (README): installs what is missing, then runs the whole suite on
# TensorFlow (the CPU default) and the backend-sensitive core tests again on JAX and on PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
# PyTorch (CPU build) for the third backend's core tests; one retry, so a machine that cannot reach the PyTorch
# index (only PyPI) falls back to PyPI quickly.
.venv/bin/pip install -q --disable-pip-version-check --retries 1 -r requirements-torch-cpu.txt 2>&1 \
  | grep -v "is ignored: it is neither\|Retrying\|Could not fetch URL\|download.pytorch.org" || true

# The browser tests drive Debian's Chromium (Playwright's own browser download needs the internet).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: browser tests will be skipped"
fi

export PYTHONDONTWRITEBYTECODE=1
# The lint and every test phase always run, so one report shows every failure; the script fails if any did.
# The JAX and PyTorch phases run one after the other beside the TensorFlow phase: a single pytest keeps 2 cores only
# ~57 % busy (compiling, starting processes, waiting on servers and the browser), so the two streams together take
# about two thirds of the time of three phases in a row. Their output is printed after the TensorFlow phase's.
status=0
echo "== ruff check (lint rules in pyproject.toml)"
.venv/bin/ruff check . || status=1
logs=$(mktemp -d)
(
  KERAS_BACKEND=jax .venv/bin/python -m pytest -q -m core --durations=15 --basetemp="$logs/jax-tmp" "$@" \
    > "$logs/jax.log" 2>&1
  echo $? > "$logs/jax.rc"
  KERAS_BACKEND=torch .venv/bin/python -m pytest -q -m core --durations=15 --basetemp="$logs/torch-tmp" "$@" \
    > "$logs/torch.log" 2>&1
  echo $? > "$logs/torch.rc"
) &
other_backends=$!
# An interrupted test command stops the other stream too.
trap 'pkill -TERM -P "$other_backends" 2>/dev/null; kill "$other_backends" 2>/dev/null' INT TERM
echo "== all tests on TensorFlow (the JAX, then PyTorch, core tests run beside it)"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q --durations=30 "$@" || status=1
wait $other_backends || true
for backend in jax torch; do
  case $backend in jax) name=JAX ;; torch) name=PyTorch ;; esac
  echo "== core tests on $name"
  cat "$logs/$backend.log"
  [ "$(cat "$logs/$backend.rc" 2>/dev/null)" = "0" ] || { echo "== core tests on $name FAILED"; status=1; }
done
rm -rf "$logs"
exit $status
