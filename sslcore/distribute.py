"""Data-parallel training over several devices (JAX): one global batch, split across devices.

The weights and the resident images are replicated on every device; only the batch's indices are
sharded along the ``batch`` axis of a ``keras.distribution.DataParallel`` mesh. The train step is the
same jitted function as on one device: XLA's partitioner computes the loss on the *global* batch, so a
contrastive loss sees negatives from every device (what the peers' ``all_gather`` does by hand, and
gets wrong when the gradient of the gathered tensor is not scaled), and batch-norm statistics are
global too. Gradients come back summed over devices by construction, so N devices give the same
update as one device on the same global batch.

Several hosts: call ``keras.distribution.initialize()`` on each (it reads the job addresses, process
count and id from its arguments or the ``KERAS_DISTRIBUTION_*`` variables) before building the trainer;
``--devices 0`` then spans every device of every host.
"""
from __future__ import annotations

import keras


def data_parallel(devices: int) -> "keras.distribution.DataParallel | None":
    """The distribution for ``devices`` devices (0 = all visible), or None to train on one device."""
    if devices == 1:
        return None
    if keras.backend.backend() != "jax":
        raise ValueError(f"Training on several devices uses JAX; this process runs {keras.backend.backend()} "
                         f"(use --backend jax, or --devices 1)")
    available = keras.distribution.list_devices()
    count = len(available) if devices == 0 else devices
    if count > len(available):
        raise ValueError(f"--devices {devices}: only {len(available)} device(s) visible ({', '.join(map(str, available))})")
    if count == 1:
        return None
    mesh = keras.distribution.DeviceMesh(shape=(count,), axis_names=["batch"], devices=available[:count])
    return keras.distribution.DataParallel(device_mesh=mesh)


def check_batch_size(distribution, batch_size: int) -> None:
    if distribution is None:
        return
    count = distribution.device_mesh.shape[0]
    if batch_size % count:
        raise ValueError(f"batch_size {batch_size} must divide evenly over {count} devices: "
                         f"use a multiple of {count}, e.g. {batch_size - batch_size % count or count}")


class Placement:
    """Where the step's inputs live: replicated state and data, batch indices split over devices."""

    def __init__(self, distribution):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        mesh = distribution.device_mesh.backend_mesh
        self._jax = jax
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.batch = NamedSharding(mesh, PartitionSpec(distribution.batch_dim_name))

    def replicate(self, tree):
        return self._jax.device_put(tree, self.replicated)

    def split_batch(self, indices):
        return None if indices is None else self._jax.device_put(indices, self.batch)
