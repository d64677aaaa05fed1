"""A pretrained encoder as the start of pretraining (``sslcore train --init SOURCE``).

A few hundred images are too few to learn features from scratch (from scratch, kNN on a 245-image folder stays at the
majority-class rate) but enough to adapt features that already know images. ``init`` starts a run's encoder from the
weights of another's: a local run folder, an ``encoder.keras`` file, a model pushed with ``sslcore push``
(``hf://OWNER/NAME``, optionally ``@REVISION``), or a timm checkpoint on the Hub (``hf://timm/resnet18.a1_in1k``:
sslcore.timm_weights; its weights fit sslcore's resnet18 at any size above 64 px, so the run's image size is free). Only the encoder is taken: the projection head, the method's own parts
(queue, momentum encoder, prototypes) and the online probe start fresh, because they belong to the source's method and
data, not to the features.

The run takes its encoder architecture from the source: a setting it leaves unset (encoder, encoder_width, image_size)
becomes the source's, and one given that differs is refused, naming both, since weights only fit the network they
were trained in. What the run started from (and, from the Hub, the exact commit) goes into config.json as
``init_source`` and from there into the model card. A resumed run continues from its checkpoint and never reads the
source again (``Trainer.prepare(init=False)``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from sslcore import timm_weights
from sslcore.encoders import ENCODERS

ARCHITECTURE = ("encoder", "encoder_width", "image_size")   # the settings whose weights must fit the source's
SOURCE_FORMS = "a run folder, an encoder.keras file or hf://OWNER/NAME[@REVISION]"


class InitMismatch(ValueError):
    """The run asks for an encoder architecture other than the source's."""


@dataclass
class InitSource:
    """A resolved ``init``: the source's encoder (pixels 0–255 → features, as ``encoder.keras`` holds it), its
    architecture, and where it came from."""
    source: str
    model: Any
    architecture: dict[str, Any]
    revision: str | None = None                       # the Hub commit the weights are from
    trained: dict[str, Any] = field(default_factory=dict)   # the source's own method and data, when it records them
    # Weights that fit any image size from this one up (a timm checkpoint); None: only the source's own size.
    min_image_size: int | None = None

    def record(self) -> dict[str, Any]:
        """What config.json (``init_source``) and the model card say the run started from."""
        return {"source": self.source, "revision": self.revision, **self.architecture, **self.trained}


def check_source(source: str) -> None:
    """Refuse, before a run is queued, a source that cannot work: a missing path, a folder that is not a run with an
    encoder yet, a file that is not ``.keras``, a Hub name not written ``hf://OWNER/NAME``. Cheap (nothing is loaded
    or downloaded): whether the model loads and fits is the training process's to find out (``resolve``)."""
    text = str(source).strip()
    if text.startswith("hf://"):
        repo = text[len("hf://"):].partition("@")[0]
        if not _HUB_REPO.match(repo):
            raise ValueError(f"--init {text}: a Hub model is written hf://OWNER/NAME[@REVISION]")
    elif os.path.isdir(text):
        from sslcore.runs import RunDir

        run = RunDir(text)
        if not run.config_path.exists():
            raise ValueError(f"--init {text}: not a run folder (no config.json); give {SOURCE_FORMS}")
        if not run.encoder_path.exists():
            raise ValueError(f"--init {text}: this run has no encoder.keras yet (it has not finished or stopped)")
    elif os.path.isfile(text):
        if not text.endswith(".keras"):
            raise ValueError(f"--init {text}: not a Keras model file (.keras); give {SOURCE_FORMS}")
    else:
        raise FileNotFoundError(f"--init {text}: no such run folder or file{_hub_hint(text)}; give {SOURCE_FORMS}")


_HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _hub_hint(text: str) -> str:
    return " (a Hub model is written hf://OWNER/NAME)" if text.count("/") == 1 and not text.startswith(".") else ""


def resolve(source: str, *, token: str | None = None, endpoint: str | None = None,
            cache_dir: str | os.PathLike | None = None) -> InitSource:
    """Find and load the encoder ``source`` names, or raise an error that says which and why: FileNotFoundError for
    a missing path, ValueError for something that is not an sslcore encoder, ``hub.HubError`` for the Hub's refusals
    (an unknown repo, a private one without a token, no connection)."""
    text = str(source).strip()
    check_source(text)   # the same refusals as at Start: a missing path, an unfinished run, a bad hf:// name
    revision, config = None, None
    if text.startswith("hf://"):
        from sslcore import hub

        repo, _, revision = text[len("hf://"):].partition("@")
        folder = hub.download(repo, token=token, endpoint=endpoint, revision=revision or None, cache_dir=cache_dir,
                              timm=True)
        revision = folder.name   # snapshots/<commit>: the commit these weights are from, whatever was asked for
        if timm_weights.is_timm_checkpoint(folder):
            return _timm_source(text, folder, revision)
        path, config = folder / "encoder.keras", _read_config(folder / "config.json")
    elif os.path.isdir(text):
        from sslcore.run import Run

        try:
            run = Run(text)
        except ValueError as error:   # not a run folder, or a run without an encoder yet
            raise ValueError(f"--init {text}: {error}") from None
        path, config = run.dir.encoder_path, run.config
    else:   # a .keras file (check_source)
        path = Path(text)
        config = _read_config(path.parent / "config.json")   # an encoder.keras inside a run folder says more
    model = _load(path, text)
    trained = {key: config[key] for key in ("method", "data", "epochs") if config and key in config}
    return InitSource(source=text, model=model, architecture=architecture_of(_inner_encoder(model, text)),
                      revision=revision, trained=trained)


def _timm_source(source: str, folder: Path, revision: str) -> InitSource:
    from sslcore.model import pixel_encoder

    tensors, config = timm_weights.read(folder, source)
    encoder = timm_weights.encoder_from(tensors, timm_weights.image_size(config), source)
    tag = config.get("pretrained_cfg", {}).get("tag")
    return InitSource(source=source, model=pixel_encoder(encoder), architecture=architecture_of(encoder),
                      revision=revision, trained={"timm_architecture": config["architecture"], "timm_tag": tag},
                      min_image_size=timm_weights.SMALLEST_IMAGE)


def _read_config(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load(path: Path, source: str):
    from sslcore.run import load_model_file

    try:
        return load_model_file(path)
    except Exception as error:  # noqa: BLE001 - any file Keras cannot read gets the same message
        raise ValueError(f"--init {source}: {path} is not a Keras model file Keras can load "
                         f"({type(error).__name__}: {error})") from None


def _inner_encoder(model, source: str):
    """The encoder network inside ``encoder.keras`` (which wraps it with the 0–255 rescaling)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name in ENCODERS:
            return layer
    raise ValueError(f"--init {source}: the model is not an sslcore encoder (none of {', '.join(ENCODERS)} inside it); "
                     "give an encoder.keras written by sslcore")


def architecture_of(encoder) -> dict[str, Any]:
    """encoder, encoder_width and image_size of an encoder network, read from its layers (the weights' truth, whatever
    a config beside them says)."""
    width = None   # resnet50's width is fixed by its architecture
    if encoder.name == "convnet":
        width = int(encoder.get_layer("conv1").filters)
    elif encoder.name == "resnet18":
        width = int(encoder.get_layer("stem_conv").filters)
    return {"encoder": encoder.name, "encoder_width": width, "image_size": int(encoder.input.shape[1])}


def describe(architecture: dict[str, Any]) -> str:
    """"convnet of width 16 at 32 px"."""
    width = f" of width {architecture['encoder_width']}" if architecture.get("encoder_width") else ""
    return f"{architecture['encoder']}{width} at {architecture['image_size']} px"


def adopt(config, source: InitSource, given: Collection[str] | None = None):
    """``config`` (a TrainConfig) with the source's architecture: each of ARCHITECTURE not in ``given`` (None: every
    setting that is not None counts as given) becomes the source's; one given that differs raises InitMismatch."""
    theirs = source.architecture
    chosen, conflicts = {}, []
    for name in ARCHITECTURE:
        value = getattr(config, name)
        if value is None or (given is not None and name not in given):
            chosen[name] = theirs[name]
        elif name == "image_size" and source.min_image_size is not None:
            if value < source.min_image_size:
                conflicts.append(f"image_size {value!r} (the source's weights need at least {source.min_image_size} px)")
        elif value != theirs[name] and not (name == "encoder_width" and theirs["encoder"] == "resnet50"):
            conflicts.append(f"{name} {value!r} (the source's is {theirs[name]!r})")
    if conflicts:
        raise InitMismatch(
            f"--init {source.source} holds a {describe(theirs)}, but this run asks for {'; '.join(conflicts)}. "
            "The encoder starts from the source's weights, which only fit the source's "
            "architecture: leave these settings out to take the source's, or give its values.")
    return dataclasses.replace(config, **chosen)


def copy_weights(source: InitSource, encoder) -> None:
    """Set ``encoder``'s variables (batch-norm statistics included) to the source encoder's."""
    import keras

    theirs = _inner_encoder(source.model, source.source).weights
    ours = encoder.weights
    shapes = lambda variables: [tuple(v.shape) for v in variables]
    if shapes(theirs) != shapes(ours):   # adopt() checked the settings; this is the weights' own word
        raise InitMismatch(f"--init {source.source}: its {len(theirs)} encoder weights do not fit this run's "
                           f"{len(ours)} ({describe(source.architecture)} against the run's {encoder.name})")
    for variable, value in zip(ours, theirs):
        variable.assign(keras.ops.convert_to_numpy(value))
