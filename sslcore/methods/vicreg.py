"""VICReg (Bardes et al. 2022): variance, invariance and covariance regularisation, each a term of its own.

The views' embeddings must agree (invariance), every dimension must keep a standard deviation of at least
1 over the batch (variance: what rules out collapse) and the dimensions must be uncorrelated (covariance).
No negatives, no momentum network, no batch standardisation inside the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

from sslcore import losses
from sslcore.methods.base import Method, MethodParams, hyperparameter


@dataclass
class VICRegParams(MethodParams):
    invariance_weight: float = hyperparameter(25.0, "weight λ of the mean squared error between the views (paper: 25)")
    variance_weight: float = hyperparameter(25.0, "weight μ of the hinge keeping each dimension's std ≥ 1 (paper: 25)")
    covariance_weight: float = hyperparameter(1.0, "weight ν of the squared off-diagonal covariances (paper: 1)")
    projection_dim: int = hyperparameter(512, "output size of the expander (paper: 8192 on ImageNet)")
    hidden_dim: int = hyperparameter(512, "hidden size of the expander")
    hidden_layers: int = hyperparameter(2, "hidden layers of the expander (paper: 2)")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the expander (paper: yes)")


class VICReg(Method):
    Params = VICRegParams
    description = "Invariance (MSE) + variance (std ≥ 1 per dimension) + covariance (decorrelation) of the two views."

    def loss(self, z1, z2):
        p = self.params
        return losses.vicreg(z1, z2, p.invariance_weight, p.variance_weight, p.covariance_weight)
