"""JAX's persistent compilation cache for the CLIs (`jaxquant.main`, `jaxquant.compare`).

The directory: `--compilation_cache=DIR`, else $JAXQUANT_COMPILATION_CACHE, else
$XDG_CACHE_HOME/jaxquant/jax (~/.cache/jaxquant/jax); 'off' (or '', 'none', '0', 'false')
disables it. A program compiled once (the same model, method and shapes, e.g. another
seed of a run) is then read back instead of compiled again.
"""
from __future__ import annotations

import os

CACHE_ENV = "JAXQUANT_COMPILATION_CACHE"


def compilation_cache_dir(value: str | None) -> str | None:
    """The compilation cache directory `--compilation_cache=value` asks for (None: off)."""
    if value is None:
        value = os.environ.get(CACHE_ENV)
    if value is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        value = os.path.join(base, "jaxquant", "jax")
    if value.strip().lower() in ("", "off", "none", "0", "false"):
        return None
    return os.path.abspath(os.path.expanduser(value))


def enable_compilation_cache(value: str | None) -> str | None:
    """Turn on JAX's persistent compilation cache in `compilation_cache_dir(value)`, for
    every compiled function (no minimum compile time or size); returns the directory."""
    path = compilation_cache_dir(value)
    if path is None:
        return None
    import jax
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
