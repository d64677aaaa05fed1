"""``label``: a class for every image of a folder from a few labelled examples (kNN on a run's embeddings)."""
from __future__ import annotations

from sslcore.commands.encoder_flags import add_encoder_flags, describe, encoder_from


def add_arguments(parser) -> None:
    from sslcore.labeling import DEFAULT_K, METHODS

    add_encoder_flags(parser)
    parser.add_argument("--data", required=True, help="folder:PATH of the images to label; never modified")
    parser.add_argument("--examples", required=True,
                        help="folder:PATH with one subfolder per class holding a few examples (1-10 each is enough)")
    parser.add_argument("--out", required=True, help="CSV to write: path,label,confidence")
    parser.add_argument("--method", choices=METHODS, default="knn",
                        help="knn (similarity-weighted vote of the nearest examples) or probe (logistic regression)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"examples that vote, for knn (default {DEFAULT_K})")
    parser.add_argument("--no-flip-average", action="store_true", help="embed each image alone, not with its mirror image")


def run(args) -> dict:
    from sslcore.labeling import label_folder

    encoder = encoder_from(args)
    result = label_folder(encoder, args.data, args.examples, args.out, method=args.method, k=args.k,
                          flip_average=not args.no_flip_average)
    return {"images": len(result.labels), "unreadable": len(result.skipped), "examples": result.examples,
            "classes": result.class_names, "counts": result.counts(),
            "mean_confidence": round(float(result.confidences.mean()), 4), "method": args.method, "out": args.out,
            **describe(args, encoder)}
