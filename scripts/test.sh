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
status=0
echo "== ruff check (lint rules in pyproject.toml)"
.venv/bin/ruff check . || status=1
echo "== all tests on TensorFlow"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q --durations=30 "$@" || status=1
echo "== core tests on JAX"
KERAS_BACKEND=jax .venv/bin/python -m pytest -q -m core --durations=15 "$@" || status=1
echo "== core tests on PyTorch"
KERAS_BACKEND=torch .venv/bin/python -m pytest -q -m core --durations=15 "$@" || status=1
exit $status
