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


def main() -> int:
    """``python -m sslcore`` and the ``sslcore`` console script (pyproject.toml): the exit status of the command."""
    chosen = _backend_flag(sys.argv[1:])
    if chosen:
        try:
            backend.configure(chosen)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    from sslcore.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
