"""SimCLR (Chen et al. 2020): pull two views of an image together, push all other images away."""
from __future__ import annotations

from dataclasses import dataclass

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class SimCLRParams(MethodParams):
    temperature: float = hyperparameter(0.05, "NT-Xent temperature; lower sharpens the softmax over negatives (the seeds use 0.1; with the 512 head, 0.05 trained better CIFAR-10 features: docs/benchmarks.md)")
    projection_dim: int = hyperparameter(128, "output size of the projection head")
    hidden_dim: int = hyperparameter(512, "hidden size of the projection head (the seeds use 128)")
    hidden_layers: int = hyperparameter(1, "hidden layers in the projection head (SimCLR v2 uses 2)")
    head_batch_norm: bool = hyperparameter(False, "batch norm inside the projection head only")


class SimCLR(Method):
    Params = SimCLRParams
    description = "NT-Xent over the 2N views of a batch: each view's positive is its twin, every other view a negative."

    def loss(self, z1, z2):
        return losses.nt_xent(z1, z2, self.params.temperature)
