"""Shared test set-up: make `import sslcore` work however pytest is started (plain `pytest`
puts only tests/ on sys.path, `python -m pytest` also adds the working directory)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
