"""The registry of self-supervised methods: one module per method, one line here."""
from __future__ import annotations

from sslcore.methods.barlow_twins import BarlowTwins
from sslcore.methods.base import Method, MethodOutput, MethodParams
from sslcore.methods.byol import BYOL
from sslcore.methods.dcclr import DCCLR
from sslcore.methods.dino import DINO
from sslcore.methods.hsic_twins import HSICTwins
from sslcore.methods.moco import MoCo
from sslcore.methods.nnclr import NNCLR
from sslcore.methods.simclr import SimCLR
from sslcore.methods.simsiam import SimSiam
from sslcore.methods.twist import TWIST
from sslcore.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "barlow_twins": BarlowTwins,
    "nnclr": NNCLR,
    "dcclr": DCCLR,
    "hsic_twins": HSICTwins,
    "twist": TWIST,
    "dino": DINO,
    "byol": BYOL,
    "simsiam": SimSiam,
    "vicreg": VICReg,
}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_params(name: str, values: dict | None = None, batch_size: int | None = None,
                  num_images: int | None = None) -> MethodParams:
    """The method's hyperparameters with ``values`` applied over the defaults, resolved for the data, validated."""
    params = method_class(name).Params.from_dict(values).resolve(num_images)
    params.validate(batch_size)
    return params


__all__ = ["METHODS", "Method", "MethodOutput", "MethodParams", "method_class", "method_params"]
