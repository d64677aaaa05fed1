"""HSIC Twins (Tsai et al. 2021): Barlow Twins whose cross-correlation target is 2I − 1 instead of I.

Read as maximising the Hilbert-Schmidt independence criterion between the two views, Barlow Twins'
objective asks the off-diagonal correlations to go to −1 rather than 0: the dimensions are pushed apart,
not only decorrelated. Everything else (projector, batch standardisation, λ) is Barlow Twins'.
"""
from __future__ import annotations

from dataclasses import dataclass

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class HSICTwinsParams(MethodParams):
    lambda_: float = hyperparameter(0.005, "weight of the off-diagonal term, target −1 (Barlow Twins' 0.005; Tsai et al. use 1/128 with a 128-d projector)")
    projection_dim: int = hyperparameter(512, "output size of the projector")
    hidden_dim: int = hyperparameter(512, "hidden size of the projector")
    hidden_layers: int = hyperparameter(2, "hidden layers of the projector")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projector")


class HSICTwins(Method):
    Params = HSICTwinsParams
    description = "Barlow Twins' cross-correlation loss with target 2I − 1: diagonal to 1, off-diagonal to −1."

    def loss(self, z1, z2):
        return losses.hsic_twins(z1, z2, self.params.lambda_)
