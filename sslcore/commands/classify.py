"""``classify``: top classes of image files with a run's classifier or one from the Hub.

Prints one JSON line per image -- ``{"file", "predictions": [{"class", "probability"}], "error"}`` -- then the
summary line every command ends with. A file that is not an image gets its own error line (and a note on stderr);
the exit status is 1 when any file failed.
"""
from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="finished run folder with a classifier.keras")
    source.add_argument("--model", help="a pushed model: hf://USER/NAME (or USER/NAME)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP, ...; any size, centre-cropped)")
    parser.add_argument("--top-k", type=int, default=3, help="classes shown per image")
    parser.add_argument("--token", help="token for a private Hub model (default: HF_TOKEN, then `hf auth login`)")
    parser.add_argument("--endpoint", help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")


def run(args) -> dict:
    from sslcore import hub

    try:
        model = hub.load(args.model if args.model else args.run, token=args.token, endpoint=args.endpoint)
    except hub.HubError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    if model.classifier is None:
        raise ValueError(f"{model.source} has no classifier (its data had no labels), so it cannot classify")
    results = model.classify_files(args.images, top_k=args.top_k)
    for result in results:
        print(json.dumps({k: v for k, v in result.items() if k != "image"}, ensure_ascii=False), flush=True)
        if result["error"]:
            print(f"error: {result['error']}", file=sys.stderr)
    failed = sum(1 for result in results if result["error"])
    summary = {"model": model.source, "images": len(results), "classified": len(results) - failed, "failed": failed}
    if failed:
        print(json.dumps(summary), flush=True)
        raise SystemExit(1)
    return summary
