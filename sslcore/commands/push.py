"""``push``: share a finished run on the Hugging Face Hub (encoder, classifier, config, metrics, model card).

The token is --token, else HF_TOKEN, else the one saved by ``hf auth login``; it is never printed or written.
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="finished run folder (holds encoder.keras)")
    parser.add_argument("--repo", required=True, help="USER/NAME on the Hub (or NAME for your own namespace)")
    parser.add_argument("--private", action="store_true", help="create the repository private (an existing one keeps its visibility)")
    parser.add_argument("--token", help="Hugging Face token with write access (default: HF_TOKEN, then `hf auth login`)")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip measuring kNN / linear accuracy on the run's data (the card reports training's kNN figure)")
    parser.add_argument("--license", help="license for the model card metadata, e.g. apache-2.0 or mit")
    parser.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")


def run(args) -> dict:
    from sslcore import hub

    try:
        result = hub.push(args.run, args.repo, token=args.token, private=args.private, evaluate=not args.no_eval,
                          license=args.license, endpoint=args.endpoint,
                          progress=lambda message: print(message, file=sys.stderr, flush=True))
    except hub.HubError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    print(f"pushed to {result.url}", file=sys.stderr)
    return result.to_dict()
