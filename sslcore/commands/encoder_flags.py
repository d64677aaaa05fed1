"""``--run`` or ``--model``: the encoder that embeds a folder, for the commands that only embed (audit, label)."""
from __future__ import annotations


def add_encoder_flags(parser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="finished or stopped run folder (its encoder.keras embeds the images)")
    which.add_argument("--model", metavar="SOURCE",
                       help="an encoder trained elsewhere, used as it is: a timm resnet18 on the Hub "
                            "(hf://timm/resnet18.a1_in1k), a model pushed with `sslcore push` (hf://OWNER/NAME"
                            "[@REVISION]), an encoder.keras file or a run folder; Hub tokens come from HF_TOKEN")
    parser.add_argument("--image-size", type=int, metavar="PX",
                        help="with --model: the size images are embedded at (a timm checkpoint takes any from 65 px; "
                             "default: the model's own, 224 for timm's ImageNet ones)")


def encoder_from(args):
    """The run folder, or the loaded ``--model`` (``sslcore.model_encoder.ModelEncoder``)."""
    if args.run is not None:
        if args.image_size is not None:
            raise ValueError("--image-size only applies to --model: a run embeds at the size it was trained at")
        return args.run
    from sslcore import model_encoder

    return model_encoder.load(args.model, image_size=args.image_size)


def describe(args, encoder) -> dict:
    """What a command's summary says it embedded with."""
    return {"run": args.run} if args.run is not None else encoder.record()
