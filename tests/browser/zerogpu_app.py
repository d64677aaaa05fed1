"""``python app.py`` as on a ZeroGPU Space, with the GPU allocation emulated (tests/zerogpu_emulator.py).

Usage: SSLCORE_EMULATED_ZEROGPU=STATE.json python tests/browser/zerogpu_app.py
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    os.chdir(ROOT)
    import zerogpu_emulator

    zerogpu_emulator.install(os.environ[zerogpu_emulator.STATE_ENV])
    import app

    app.main()


if __name__ == "__main__":   # the emulator's fork server imports this file again, as __mp_main__
    main()
