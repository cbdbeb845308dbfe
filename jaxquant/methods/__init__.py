"""Method registry: config name -> factory(Context) -> Method.

Each family lives in its own module and exposes a `from_config(name, ctx)`
function; modules are imported lazily so that a notebook importing one family
does not pay for the others.
"""
from __future__ import annotations

import importlib

from jaxquant.errors import ConfigError
from jaxquant.methods.base import Context, Method  # noqa: F401

# method name -> module (under jaxquant.methods) that builds it.
_FAMILIES = {
    "fp": "full_precision",
    "ste": "baselines", "binary_connect": "baselines", "bwn": "baselines", "dorefa": "baselines",
    "md_tanh": "mirror", "md_softmax": "mirror", "md_tanh_s": "mirror",
    "md_softmax_s": "mirror", "pmf": "mirror", "gd_tanh": "mirror",
    "proxquant": "proxquant",
    "metaquant": "metaquant",
    "pdqat": "pdqat",
}


class UnknownMethodError(ConfigError):
    pass


def names() -> list[str]:
    return sorted(_FAMILIES)


def build(name: str, ctx: Context) -> Method:
    """The `Method` named `name`, configured from `ctx.config.method`."""
    if name not in _FAMILIES:
        raise UnknownMethodError(
            f"unknown method {name!r} (config.method.name). Valid methods: {', '.join(names())}.")
    module = importlib.import_module(f"jaxquant.methods.{_FAMILIES[name]}")
    return module.from_config(name, ctx)
