"""DCCLR: SimCLR with the decoupled contrastive loss (Yeh et al. 2022, "Decoupled Contrastive Learning").

NT-Xent's denominator holds the positive pair as well as the negatives, so an easy positive also damps
what the negatives teach. Dropping it from the denominator (everything else as SimCLR) learns faster and
depends less on a large batch, which is why it suits small CPU batches.
"""
from __future__ import annotations

from dataclasses import dataclass

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class DCCLRParams(MethodParams):
    temperature: float = hyperparameter(0.1, "temperature of the decoupled loss (paper: 0.1 for its SimCLR runs)")
    projection_dim: int = hyperparameter(128, "output size of the projection head")
    hidden_dim: int = hyperparameter(128, "hidden size of the projection head")
    hidden_layers: int = hyperparameter(1, "hidden layers in the projection head")
    head_batch_norm: bool = hyperparameter(False, "batch norm inside the projection head only")


class DCCLR(Method):
    Params = DCCLRParams
    description = "NT-Xent without the positive pair in the denominator (decoupled contrastive loss)."

    def loss(self, z1, z2):
        return losses.dcl(z1, z2, self.params.temperature)
