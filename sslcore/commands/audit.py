"""``audit``: exact and near-duplicates, outliers, unreadable files and image-quality issues of an image folder."""
from __future__ import annotations

from sslcore.commands.encoder_flags import add_encoder_flags, describe, encoder_from


def add_arguments(parser) -> None:
    from sslcore.audit import DEFAULT_NEIGHBORS, DEFAULT_THRESHOLD

    add_encoder_flags(parser)
    parser.add_argument("--data", required=True, help="folder:PATH, flat or one subfolder per class; never modified")
    parser.add_argument("--out", required=True,
                        help="folder for duplicates.csv, outliers.csv, unreadable.csv and issues.csv (outside the image folder)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="whitened cosine similarity from which two images are near-duplicates "
                             f"(default {DEFAULT_THRESHOLD}; see docs/audit.md)")
    parser.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS,
                        help=f"nearest images an outlier score averages over (default {DEFAULT_NEIGHBORS})")
    parser.add_argument("--no-flip-average", action="store_true",
                        help="embed each image alone, not averaged with its mirror image (flipped copies may be missed)")
    parser.add_argument("--write-clean", metavar="DIR",
                        help="copy the folder to DIR (new or empty, outside the folder) without the flagged files")
    parser.add_argument("--drop-outliers", type=int, default=0, metavar="N",
                        help="with --write-clean, also leave out the N most outlying images (default 0)")


def run(args) -> dict:
    from sslcore.audit import audit_folder

    if args.drop_outliers and not args.write_clean:
        raise ValueError("--drop-outliers only applies to the copy made with --write-clean DIR")
    encoder = encoder_from(args)
    report = audit_folder(encoder, args.data, args.out, threshold=args.threshold, neighbors=args.neighbors,
                          flip_average=not args.no_flip_average, write_clean=args.write_clean,
                          drop_outliers=args.drop_outliers)
    return {**report.summary, **describe(args, encoder)}
