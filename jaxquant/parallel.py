"""Device mesh and shardings for data-parallel training (DESIGN.md, Scale).

One mesh axis, 'data', over every device; the batch is sharded along it and
the train state is replicated. The jitted step is the same code on 1 or N
devices: XLA inserts the gradient all-reduce.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxquant.errors import ConfigError


def make_mesh() -> Mesh:
    """A 1-D mesh named 'data' over all devices (all processes')."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def check_batch(batch_size: int, mesh: Mesh, name: str = "config.train.batch_size") -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ConfigError(
            f"{name}={batch_size} does not divide by the {n} devices of the mesh; "
            f"use a multiple of {n} (e.g. {max(n, batch_size // n * n)}).")
