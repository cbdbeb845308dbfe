"""Method registry: config name -> factory(Context) -> Method, and post-training runners.

Each family lives in its own module and exposes a `from_config(name, ctx)`
function; modules are imported lazily so that a notebook importing one family
does not pay for the others.

Post-training methods (L-DNQ) do not train: `runner(name)` gives the function
`run(config, workdir, overwrite)` that `jaxquant.main` calls instead of the
trainer, and their `Method` is the identity (the params they save are already
quantized), which is what evaluation and export of such a run need.
"""
from __future__ import annotations

import importlib

from jaxquant.errors import ConfigError
from jaxquant.methods.base import Context, Method  # noqa: F401

# method name -> module (under jaxquant.methods) that builds it.
_FAMILIES = {
    "fp": "full_precision",
    "ste": "baselines", "binary_connect": "baselines", "bwn": "baselines", "dorefa": "baselines",
    "bitnet": "baselines",
    "md_tanh": "mirror", "md_softmax": "mirror", "md_tanh_s": "mirror",
    "md_softmax_s": "mirror", "pmf": "mirror", "gd_tanh": "mirror",
    "proxquant": "proxquant",
    "metaquant": "metaquant",
    "pdqat": "pdqat",
    "ldnq": "full_precision",  # post-training: see _RUNNERS
}

# post-training method name -> module with `run(config, workdir, overwrite=False) -> dict`.
_RUNNERS = {
    "ldnq": "jaxquant.ptq.runner",
}


class UnknownMethodError(ConfigError):
    pass


def names() -> list[str]:
    return sorted(_FAMILIES)


def runner(name: str):
    """`run(config, workdir, overwrite)` of a post-training method, or None (use the trainer)."""
    if name not in _RUNNERS:
        return None
    return importlib.import_module(_RUNNERS[name]).run


def build(name: str, ctx: Context) -> Method:
    """The `Method` named `name`, configured from `ctx.config.method`."""
    if name not in _FAMILIES:
        raise UnknownMethodError(
            f"unknown method {name!r} (config.method.name). Valid methods: {', '.join(names())}.")
    module = importlib.import_module(f"jaxquant.methods.{_FAMILIES[name]}")
    return module.from_config(name, ctx)
