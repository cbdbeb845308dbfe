"""Devices, meshes and shardings: data parallel on one host or many (DESIGN.md, Scale).

One mesh axis, 'data', over every device of every process; the batch is
sharded along it and the train state is replicated. The jitted step is the
same code on 1 device, N local devices or N processes (JAX's multi-controller
runtime): XLA inserts the gradient all-reduce.

Multi-host: `initialize(...)` starts `jax.distributed` (explicit coordinator
flags, or the cluster environment JAX detects: SLURM, TPU pods). Every process
then runs the same program; host arrays become global arrays through
`to_global` (each process supplies the rows its devices hold).
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxquant.errors import ConfigError


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
    """Start JAX's distributed runtime when asked; True if it was started.

    Explicit `coordinator_address` (host:port), `num_processes` and
    `process_id`, or `auto=True` to let JAX read the cluster environment
    (SLURM, Open MPI, TPU pods). On CPU, cross-process collectives use gloo.
    """
    if not (coordinator_address or auto):
        return False
    if coordinator_address and (num_processes is None or process_id is None):
        raise ConfigError(
            f"--coordinator_address={coordinator_address} needs --num_processes and --process_id "
            f"too (or use --distributed alone where SLURM / a TPU pod provides them).")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                          f"(--num_processes={num_processes}).")
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or not _has_accelerator_plugin():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True


def _has_accelerator_plugin() -> bool:
    import importlib.util
    return any(importlib.util.find_spec(m) is not None
               for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu"))


def is_main_process() -> bool:
    """Process 0 writes logs, metrics and exports."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Barrier across processes (no-op on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def agree_on_signal(local: int | None) -> int | None:
    """The stop signal any process has received, or None; a collective, so every process
    calls it at the same steps. A preemption signal (SIGTERM from the scheduler) can
    reach the processes at different steps, or only some of them; stopping on the
    agreed value makes them all checkpoint and stop at one step together."""
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils
    seen = multihost_utils.process_allgather(np.asarray(local or 0, np.int32))
    return int(np.max(seen)) or None


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


def local_rows(sharding: NamedSharding, global_rows: int) -> slice:
    """The rows of a batch-sharded global array that this process's devices hold."""
    spans = sharding.addressable_devices_indices_map((global_rows,)).values()
    starts = [s[0].start or 0 for s in spans]
    stops = [global_rows if s[0].stop is None else s[0].stop for s in spans]
    return slice(min(starts), max(stops))


def to_global(tree, sharding: NamedSharding):
    """Host arrays, identical on every process, as global arrays with `sharding`.

    On one process this is `jax.device_put`; across processes each process
    supplies only the shards its own devices hold.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                               lambda idx, x=np.asarray(x): x[idx]), tree)


def from_process_local(tree, sharding: NamedSharding, global_rows: int):
    """Per-process row blocks (see `local_rows`) assembled into global batch-sharded arrays."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), (global_rows, *np.shape(x)[1:])), tree)
