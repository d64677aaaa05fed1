"""Momentum (EMA) copies of a network: MoCo's key encoder, BYOL's target, DINO's teacher. Written once."""
from __future__ import annotations

import math

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


def cosine_momentum(base: float, step, total_steps: int | None):
    """BYOL's schedule (Grill et al. 2020, §3.2), also DINO's: τ = 1 − (1 − base)·(cos(π·step/total) + 1)/2.

    τ starts at ``base`` and rises to 1 at the last step, so the target settles as training ends. ``step``
    (steps done, a tensor: the method counts them in a non-trainable variable, so a resumed run continues
    the schedule exactly) over ``total_steps`` (the run's length, which the trainer gives the method, see
    ``Method.total_steps``); without a length the momentum stays at ``base``.
    """
    if not total_steps:
        return ops.convert_to_tensor(base, dtype="float32")
    progress = ops.minimum(ops.cast(step, "float32") / float(total_steps), 1.0)
    return 1.0 - (1.0 - base) * (ops.cos(math.pi * progress) + 1.0) / 2.0


def scheduled_ema_update(pairs, base: float, steps_done, total_steps: int | None):
    """One step of a momentum target with the cosine schedule: EMA-update each (target, online) pair with
    τ = ``cosine_momentum(base, steps_done, total_steps)``, then count the step in ``steps_done`` (a
    non-trainable scalar variable of the method). Returns τ."""
    momentum = cosine_momentum(base, steps_done, total_steps)
    for target, online in pairs:
        ema_update(target, online, momentum)
    steps_done.assign(steps_done + 1.0)
    return momentum
