"""Entry point: pick the Keras backend from ``--backend`` before Keras is imported, then run the CLI."""
import sys

from sslcore import backend


def _backend_flag(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--backend" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


if __name__ == "__main__":
    chosen = _backend_flag(sys.argv[1:])
    if chosen:
        try:
            backend.configure(chosen)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    from sslcore.cli import main

    sys.exit(main())
