"""CPU thread settings for the benchmarks, applied before JAX / PyTorch start.

On a small shared CPU machine multi-threaded kernels of several processes
oversubscribe the cores and step times swing by several x; one thread per
library (`--threads 1`) gives steadier, like-for-like numbers. 0 keeps each
library's default (all cores; the right choice on an idle machine or a GPU).
XLA:CPU has no thread-count flag: it runs single-threaded or on its own pool.
"""
from __future__ import annotations

import os


def xla_flags(threads: int, devices: int = 0, base: str | None = None) -> str:
    """XLA_FLAGS with single-threaded CPU kernels if `threads` is 1 (else XLA's pool) and
    `devices` host-platform devices (0: default)."""
    flags = (os.environ.get("XLA_FLAGS", "") if base is None else base).split()
    flags = [f for f in flags if not f.startswith(("--xla_cpu_multi_thread_eigen",
                                                    "--xla_force_host_platform_device_count"))]
    if threads == 1:  # XLA:CPU has no thread-count flag; it is one thread or its pool
        flags.append("--xla_cpu_multi_thread_eigen=false")
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)


def apply(threads: int, devices: int = 0) -> None:
    """Set this process's XLA_FLAGS (call before importing jax)."""
    os.environ["XLA_FLAGS"] = xla_flags(threads, devices)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
