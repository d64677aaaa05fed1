"""BYOL (Grill et al. 2020): predict a slowly moving target network's projection of the other view.

The online network (encoder, projector, predictor) learns to predict the target network's projection of
the other view; the target is an exponential moving average of the online encoder and projector and gets
no gradient. Its momentum τ follows a cosine schedule from ``momentum`` to 1 over the run, so the target
settles as training ends. No negatives.

How the schedule knows where it is: the method counts its steps in a non-trainable variable
(``steps_done``, saved in checkpoints, so a resumed run continues the schedule exactly) and the trainer
gives it the run's length (``Method.total_steps``, set in ``Trainer.prepare``). Outside a trainer the
momentum stays at its base value. (The optimizer's own step counter is not used: JAX's compiled step
keeps the optimizer's variables out of the model's forward pass.)
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from sslcore import losses
from sslcore.heads import mlp_head
from sslcore.methods.base import Method, MethodOutput, MethodParams, hyperparameter
from sslcore.methods.momentum import cosine_momentum, momentum_copy, scheduled_ema_update


@dataclass
class BYOLParams(MethodParams):
    momentum: float = hyperparameter(0.99, "base EMA momentum of the target, raised to 1 by a cosine schedule over the run "
                                           "(paper: 0.996 on ImageNet; 0.99 suits short runs on small data)")
    projection_dim: int = hyperparameter(128, "output size of the projector (paper: 256)")
    hidden_dim: int = hyperparameter(512, "hidden size of the projector (paper: 4096)")
    hidden_layers: int = hyperparameter(1, "hidden layers of the projector (paper: 1)")
    head_batch_norm: bool = hyperparameter(True, "batch norm inside the projector and predictor (paper: yes)")
    predictor_hidden_dim: int = hyperparameter(512, "hidden size of the predictor MLP (paper: 4096)")

    def validate(self, batch_size=None):
        super().validate(batch_size)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")


class BYOL(Method):
    Params = BYOLParams
    description = "Normalised MSE between the online prediction and a momentum target's projection of the other view."

    def __init__(self, params: BYOLParams, feature_dim: int, encoder: keras.Model, **kwargs):
        super().__init__(params, feature_dim, encoder, **kwargs)
        self.predictor = mlp_head(params.projection_dim, [params.predictor_hidden_dim], params.projection_dim,
                                  batch_norm=params.head_batch_norm, name="predictor")
        self.target_encoder = momentum_copy(encoder, "target_encoder")
        self.target_head = momentum_copy(self.projection_head, "target_projection_head")
        self.steps_done = self.add_weight(shape=(), name="steps_done", trainable=False, initializer="zeros")

    def current_momentum(self):
        """τ for the next step, from the cosine schedule."""
        return cosine_momentum(self.params.momentum, self.steps_done, self.total_steps)

    def targets(self, view, training):
        return ops.stop_gradient(self.target_head(self.target_encoder(view, training=training), training=training))

    def compute(self, encoder, view1, view2, training=True):
        # The target moves before it is used, as MoCo's key encoder does here: the same as BYOL's update after
        # the previous step's optimizer update.
        scheduled_ema_update([(self.target_encoder, encoder), (self.target_head, self.projection_head)],
                             self.params.momentum, self.steps_done, self.total_steps)
        features1 = encoder(view1, training=training)
        p1 = self.predictor(self.projection_head(features1, training=training), training=training)
        p2 = self.predictor(self.projection_head(encoder(view2, training=training), training=training), training=training)
        target1, target2 = self.targets(view1, training), self.targets(view2, training)
        loss = (losses.byol(p1, target2) + losses.byol(p2, target1)) / 2
        return MethodOutput(loss, p1, target2, features1)
