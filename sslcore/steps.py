"""One compiled train step per backend, around the backend-neutral ``SSLModel.train_losses``.

The images live on the device as one uint8 tensor; a step receives only the batch's indices, gathers
the batch inside the compiled function and returns the metrics as device scalars. Nothing goes back to
the host per step: the trainer reads the metrics every few steps.

* JAX: a pure function of (trainable, non-trainable, optimizer) values under ``jax.jit`` with those
  buffers donated, so XLA updates the weights in place.
* TensorFlow: ``tf.function`` with ``GradientTape``; XLA (``jit_compile``) is a choice, since on CPU the
  plain graph is faster (BENCHMARKS.md: ``jit_compile="auto"`` turns it off there too).
* PyTorch: eager autograd, calling the optimizer directly, without ``model.fit``'s per-step machinery.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import keras
from keras import ops


class DeviceData(NamedTuple):
    """The training arrays, resident on the device for the whole run (a NamedTuple: a JAX pytree as is)."""
    images: Any
    labels: Any | None = None
    probe_images: Any | None = None
    probe_labels: Any | None = None

    @classmethod
    def from_numpy(cls, images, labels=None, probe_images=None, probe_labels=None) -> "DeviceData":
        def to_device(array, dtype):
            return None if array is None else ops.convert_to_tensor(array, dtype=dtype)
        return cls(to_device(images, "uint8"), to_device(labels, "int32"),
                   to_device(probe_images, "uint8"), to_device(probe_labels, "int32"))


def _gather(data: DeviceData, indices, probe_indices):
    take = lambda array, index: None if array is None else ops.take(array, index, axis=0)
    probe = probe_indices if probe_indices is not None else None
    return (take(data.images, indices), take(data.labels, indices),
            take(data.probe_images, probe) if probe is not None else None,
            take(data.probe_labels, probe) if probe is not None else None)


class TrainStep:
    """``step(indices, probe_indices=None) -> metrics`` updating the model's weights; ``sync()`` writes the
    step's view of the weights back into the Keras variables (needed before evaluation or saving on JAX)."""

    def __call__(self, indices, probe_indices=None) -> dict[str, Any]:
        raise NotImplementedError

    def sync(self) -> None:
        pass

    def reload(self) -> None:
        """Take up values written into the Keras variables from outside the step (JAX keeps its own copy)."""

    def assign(self, pairs) -> None:
        """Give optimizer variables new values between two steps ((variable, value) pairs), in the step's copy too."""
        for variable, value in pairs:
            variable.assign(value)


class JaxTrainStep(TrainStep):
    def __init__(self, model, optimizer, data: DeviceData, jit_compile=True, distribution=None):
        import jax

        from sslcore.distribute import Placement

        self.placement = Placement(distribution) if distribution is not None else None
        self.model, self.optimizer = model, optimizer
        self.data = self.placement.replicate(data) if self.placement else data
        self.trainable = list(model.trainable_variables)
        self.non_trainable = list(model.non_trainable_variables)
        self.state = self._read_state()

        def loss_and_updates(trainable_values, non_trainable_values, batch):
            mapping = list(zip(self.trainable, trainable_values)) + list(zip(self.non_trainable, non_trainable_values))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                total, metrics = model.train_losses(*batch)
            updated = [scope.get_current_value(v) for v in self.non_trainable]
            updated = [new if new is not None else old for new, old in zip(updated, non_trainable_values)]
            return total, (metrics, updated)

        gradient_fn = jax.value_and_grad(loss_and_updates, has_aux=True)
        self._gradients = jax.jit(lambda state, data, indices: gradient_fn(state[0], state[1], _gather(data, indices, None)))

        def step(state, data, indices, probe_indices):
            trainable_values, non_trainable_values, optimizer_values = state
            batch = _gather(data, indices, probe_indices)
            (_, (metrics, non_trainable_values)), grads = gradient_fn(trainable_values, non_trainable_values, batch)
            trainable_values, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable_values)
            return (trainable_values, non_trainable_values, optimizer_values), metrics

        self._step = jax.jit(step, donate_argnums=(0,)) if jit_compile else step

    def _read_state(self):
        state = ([v.value for v in self.trainable], [v.value for v in self.non_trainable],
                 [v.value for v in self.optimizer.variables])
        return self.placement.replicate(state) if self.placement else state

    def __call__(self, indices, probe_indices=None):
        if self.placement:
            indices, probe_indices = self.placement.split_batch(indices), self.placement.split_batch(probe_indices)
        self.state, metrics = self._step(self.state, self.data, indices, probe_indices)
        return metrics

    def loss_and_gradients(self, indices):
        """The loss and the gradient of every trainable weight for one batch, without updating anything
        (what the multi-device equivalence test compares)."""
        if self.placement:
            indices = self.placement.split_batch(indices)
        (loss, _), grads = self._gradients(self.state, self.data, indices)
        return loss, grads

    def sync(self):
        # Keras gets copies: the step donates its own buffers, and Keras's predict may donate the variables'.
        import jax.numpy as jnp

        trainable_values, non_trainable_values, optimizer_values = self.state
        for variables, values in ((self.trainable, trainable_values), (self.non_trainable, non_trainable_values),
                                  (self.optimizer.variables, optimizer_values)):
            for variable, value in zip(variables, values):
                variable.assign(jnp.array(value, copy=True))

    def reload(self):
        """Take the Keras variables' values again (after a checkpoint was loaded into them)."""
        self.state = self._read_state()

    def assign(self, pairs):
        import jax.numpy as jnp

        index = {id(variable): i for i, variable in enumerate(self.optimizer.variables)}
        trainable_values, non_trainable_values, optimizer_values = self.state
        optimizer_values = list(optimizer_values)
        for variable, value in pairs:
            variable.assign(value)   # a buffer of its own: the step donates those of its state
            new = jnp.asarray(value, dtype=variable.dtype)
            optimizer_values[index[id(variable)]] = self.placement.replicate(new) if self.placement else new
        self.state = (trainable_values, non_trainable_values, optimizer_values)


class TensorFlowTrainStep(TrainStep):
    def __init__(self, model, optimizer, data: DeviceData, jit_compile=False):
        import tensorflow as tf

        self.data = data
        trainable = model.trainable_variables

        # The resident tensors are captured by the function (as inputs, not constants folded into the graph).
        def step(indices, probe_indices):
            with tf.GradientTape() as tape:
                total, metrics = model.train_losses(*_gather(data, indices, probe_indices))
            grads = tape.gradient(total, trainable)
            optimizer.apply(grads, trainable)
            return metrics

        self._step = tf.function(step, jit_compile=bool(jit_compile), reduce_retracing=True)

    def __call__(self, indices, probe_indices=None):
        return self._step(indices, probe_indices)


class TorchTrainStep(TrainStep):
    def __init__(self, model, optimizer, data: DeviceData, jit_compile=False):
        import torch

        self.torch, self.model, self.optimizer, self.data = torch, model, optimizer, data
        self.trainable = model.trainable_variables

    def __call__(self, indices, probe_indices=None):
        torch = self.torch
        total, metrics = self.model.train_losses(*_gather(self.data, indices, probe_indices))
        for variable in self.trainable:
            variable.value.grad = None
        total.backward()
        grads = [variable.value.grad for variable in self.trainable]
        with torch.no_grad():
            self.optimizer.apply(grads, self.trainable)
        return {name: value.detach() for name, value in metrics.items()}


_STEPS: dict[str, Callable[..., TrainStep]] = {"jax": JaxTrainStep, "tensorflow": TensorFlowTrainStep, "torch": TorchTrainStep}
DEFAULT_JIT = {"jax": True, "tensorflow": False, "torch": False}


def make_train_step(model, optimizer, data: DeviceData, jit_compile="auto", distribution=None) -> TrainStep:
    backend = keras.backend.backend()
    if jit_compile == "auto":
        jit_compile = DEFAULT_JIT[backend]
    if distribution is not None:
        return JaxTrainStep(model, optimizer, data, jit_compile=True, distribution=distribution)
    return _STEPS[backend](model, optimizer, data, jit_compile=jit_compile)


def to_host(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(ops.convert_to_numpy(value)) for name, value in metrics.items()}
