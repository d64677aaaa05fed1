"""HSIC Twins (Tsai et al. 2021): Barlow Twins whose cross-correlation target is 2I − 1 instead of I.

Read as maximising the Hilbert-Schmidt independence criterion between the two views, Barlow Twins'
objective asks the off-diagonal correlations to go to −1 rather than 0: the dimensions are pushed apart,
not only decorrelated. The loss is Barlow Twins' with that target; the defaults are Tsai et al.'s CIFAR-10
ones (a 128-d projector, λ = 1/128): every off-diagonal entry costs about λ even when uncorrelated, so λ
has to shrink as the projector widens (at 512-d and λ = 0.005 that constant alone is ≈ 1,300).
"""
from __future__ import annotations

from dataclasses import dataclass

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class HSICTwinsParams(MethodParams):
    lambda_: float = hyperparameter(0.0078125, "weight of the off-diagonal term, target −1 (Tsai et al.'s CIFAR-10 setting: 1/128 "
                                               "with a 128-d projector; scale it as 1/projection_dim)")
    projection_dim: int = hyperparameter(128, "output size of the projector (Tsai et al. on CIFAR-10: 128)")
    hidden_dim: int = hyperparameter(512, "hidden size of the projector (Tsai et al.: 512)")
    hidden_layers: int = hyperparameter(1, "hidden layers of the projector (Tsai et al.: 1)")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projector")


class HSICTwins(Method):
    Params = HSICTwinsParams
    description = "Barlow Twins' cross-correlation loss with target 2I − 1: diagonal to 1, off-diagonal to −1."

    def loss(self, z1, z2):
        return losses.hsic_twins(z1, z2, self.params.lambda_)
