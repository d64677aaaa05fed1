"""Momentum (EMA) copies of a network: MoCo's key encoder, BYOL's target, DINO's teacher. Written once."""
from __future__ import annotations

import keras
from keras import ops


def momentum_copy(network: keras.Model, name: str) -> keras.Model:
    """A copy of ``network`` with the same starting weights whose variables get no gradient.

    Only the variables are frozen, not the layers: a frozen Keras layer would also switch its batch norm
    to inference mode, while MoCo and BYOL run the key/target network in training mode.
    """
    copy = keras.models.clone_model(network)
    copy.name = name
    copy.set_weights(network.get_weights())
    for variable in copy.trainable_variables:
        variable.trainable = False
    return copy


def ema_update(target: keras.Model, online: keras.Model, momentum: float) -> None:
    """target ← momentum · target + (1 − momentum) · online, for each weight the two networks share.

    Batch-norm moving statistics are left to each network (they are not weights being learnt).
    """
    online_weights = [v for v in online.weights if v.trainable]
    target_weights = [v for v in target.weights if not v.trainable and "moving" not in v.name]
    for target_variable, online_variable in zip(target_weights, online_weights):
        new_value = momentum * target_variable + (1.0 - momentum) * ops.stop_gradient(online_variable)
        target_variable.assign(ops.cast(new_value, target_variable.dtype))
