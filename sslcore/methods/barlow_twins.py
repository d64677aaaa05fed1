"""Barlow Twins (Zbontar et al. 2021): make the two views' embeddings correlate along the diagonal only."""
from __future__ import annotations

from dataclasses import dataclass

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class BarlowTwinsParams(MethodParams):
    lambda_: float = hyperparameter(0.005, "weight of the off-diagonal (redundancy) term (paper: 0.005)")
    projection_dim: int = hyperparameter(512, "output size of the projector (the paper uses 8192 on ImageNet; small data needs less)")
    hidden_dim: int = hyperparameter(512, "hidden size of the projector")
    hidden_layers: int = hyperparameter(2, "hidden layers of the projector (paper: 2)")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projector (paper: yes)")


class BarlowTwins(Method):
    Params = BarlowTwinsParams
    description = "Cross-correlation of the two views' batch-standardised embeddings driven to the identity matrix."

    def loss(self, z1, z2):
        return losses.barlow_twins(z1, z2, self.params.lambda_)
