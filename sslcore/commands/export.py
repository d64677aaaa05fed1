"""``export``: a run's embeddings of an image folder, as Embedding Projector files or as a CSV of vectors."""
from __future__ import annotations


def add_arguments(parser) -> None:
    from sslcore.export import THUMBNAIL_SIZE

    parser.add_argument("--run", required=True, help="finished run folder (its encoder.keras embeds the images)")
    parser.add_argument("--data", required=True, help="folder:PATH, flat or one subfolder per class; never modified")
    parser.add_argument("--format", choices=("projector", "csv"), default="projector",
                        help="projector: vectors.tsv, metadata.tsv, sprite.png and configs for projector.tensorflow.org "
                             "and TensorBoard; csv: path + vector per row")
    parser.add_argument("--out", required=True, help="folder (projector) or .csv file (csv), outside the image folder")
    parser.add_argument("--thumbnail-size", type=int, default=THUMBNAIL_SIZE,
                        help=f"sprite thumbnail pixels (default {THUMBNAIL_SIZE}: up to 65,536 images fit the projector's "
                             "8,192 px sprite)")
    parser.add_argument("--max-images", type=int, help="projector: export at most this many (an evenly spread sample)")
    parser.add_argument("--no-flip-average", action="store_true", help="embed each image alone, not with its mirror image")


def run(args) -> dict:
    from sslcore.export import export_folder

    return export_folder(args.run, args.data, args.out, format=args.format, flip_average=not args.no_flip_average,
                         thumbnail_size=args.thumbnail_size, max_images=args.max_images)
