"""An encoder trained elsewhere, to embed a folder with: ``audit --model`` and ``label --model``.

A few hundred images of one's own are too few to train features that tell an off-subject photo from the rest or a
cat from a dog (docs/audit.md), and the audit and few-label labelling need no training of their own: they need
features. ``--model`` takes them from an encoder as it is (a timm checkpoint on the Hub such as
``hf://timm/resnet18.a1_in1k``, a model pushed with ``sslcore push``, an ``encoder.keras`` file, a run folder), with
no run in between; ``train --init`` with the same source adapts it to the folder first. Sources are found and loaded
by ``sslcore.pretrained.resolve``, the same code as ``--init``'s, so both take the same forms and refuse the same
things.

Everything that embeds for the audit or labelling asks for ``.encoder`` and ``.image_size``: ``sslcore.run.Run`` has
them, and so does ``ModelEncoder``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sslcore import pretrained


@dataclass(repr=False, eq=False)
class ModelEncoder:
    """An encoder (RGB pixels 0–255 → features, as ``encoder.keras`` holds it) at ``image_size``, and where it is from."""
    source: str
    encoder: Any
    image_size: int
    revision: str | None = None   # the Hub commit of the weights

    def record(self) -> dict[str, Any]:
        """What a report says it embedded with."""
        return {"model": self.source, "revision": self.revision, "image_size": self.image_size}

    def __repr__(self) -> str:
        return f"ModelEncoder({self.source!r}, {self.image_size} px)"


def load(source: str, *, image_size: int | None = None, token: str | bool | None = None,
         cache_dir: str | None = None) -> ModelEncoder:
    """The encoder ``source`` names, at its own image size or at ``image_size`` where its weights allow one (a timm
    checkpoint: any size from 65 px). ``token``: as ``sslcore.hub.load``'s (False: public repos only). Errors are
    ValueError (FileNotFoundError for a missing path) naming --model."""
    from sslcore.hub import HubError

    try:
        start = pretrained.resolve(source, token=token, cache_dir=cache_dir)
        return _at_size(start, image_size)
    except HubError as error:   # the Hub's refusal (unknown repo, no connection) is the user's input to fix
        raise ValueError(f"--model {source}: {error}") from None
    except (ValueError, FileNotFoundError) as error:
        # resolve() words its errors for --init, the flag it was written for; here the user typed --model.
        raise type(error)(str(error).replace("--init ", "--model ", 1)) from None


def _at_size(start: pretrained.InitSource, image_size: int | None) -> ModelEncoder:
    own = start.architecture["image_size"]
    if image_size is None or image_size == own:
        return ModelEncoder(start.source, start.model, own, start.revision)
    smallest = start.min_image_size
    if smallest is None or image_size < smallest:
        allowed = f"at least {smallest} px" if smallest else f"only its own {own} px"
        raise ValueError(f"--model {start.source}: --image-size {image_size} does not fit its weights, which take "
                         f"{allowed}; leave --image-size out to use {own} px")
    from sslcore.encoders import build_encoder
    from sslcore.model import pixel_encoder

    architecture = start.architecture
    network = build_encoder(architecture["encoder"], image_size, architecture["encoder_width"])
    pretrained.copy_weights(start, network)
    return ModelEncoder(start.source, pixel_encoder(network), image_size, start.revision)
