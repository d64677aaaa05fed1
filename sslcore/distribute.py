"""Data-parallel training over several devices (JAX): one global batch, split across devices.

The weights and the resident images are replicated on every device; only the batch's indices are
sharded along the ``batch`` axis of a ``keras.distribution.DataParallel`` mesh. The train step is the
same jitted function as on one device: XLA's partitioner computes the loss on the *global* batch, so a
contrastive loss sees negatives from every device (what the peers' ``all_gather`` does by hand, and
gets wrong when the gradient of the gathered tensor is not scaled), and batch-norm statistics are
global too. Gradients come back summed over devices by construction, so N devices give the same
update as one device on the same global batch.

Several hosts: ``sslcore train`` with the ``KERAS_DISTRIBUTION_*`` variables set (``join_hosts``), or
``keras.distribution.initialize()`` before building the trainer, joins JAX's distributed runtime; ``--devices 0``
then spans every device of every host. Every host loads the data and computes the same global batch indices from
the seed, and each device takes its slice of them, so no host sends images to another; that only works if the
hosts agree on settings and images, which ``check_hosts_agree`` verifies before the first step
(docs/distributed.md).
"""
from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np


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


def check_hosts_agree(settings: dict, images: np.ndarray) -> None:
    """Refuse to train when the hosts of a multi-host run disagree on the settings or the training images.

    A host with another seed, batch size or image folder would compute other batch indices, and each device
    would silently take its slice of its own host's batch: a run that trains on a mixture and reports nothing.
    """
    import jax

    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(images).data)
    fingerprint = np.frombuffer(digest.digest(), dtype=np.uint32)   # uint32: JAX's default 32-bit mode keeps it whole
    try:
        multihost_utils.assert_equal(fingerprint, "hosts disagree")
    except AssertionError:
        raise ValueError(f"Host {jax.process_index()} of {jax.process_count()} has other training settings or images "
                         "than the others: every host must run the same command (same seed, batch size, method, "
                         "data) on the same files.") from None


PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"


def join_hosts() -> bool:
    """Join JAX's distributed runtime when a launcher says this process is one of several (``KERAS_DISTRIBUTION_*``
    variables, read by ``keras.distribution.initialize``). Must run before JAX computes anything."""
    value = os.environ.get(PROCESSES_ENV, "").strip() or "1"
    try:
        processes = int(value)
    except ValueError:
        raise ValueError(f"{PROCESSES_ENV} must be a whole number of processes; got {value!r}") from None
    if processes <= 1:
        return False
    if keras.backend.backend() != "jax":
        raise ValueError(f"Training on several hosts uses JAX; this process runs {keras.backend.backend()} "
                         "(use --backend jax)")
    import jax

    # CPU devices need a collectives library to reach another process's devices; GPUs use NCCL and ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize()
    return True
