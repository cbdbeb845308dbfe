"""Argument checks shared by the method factories: a notebook mistake (a mask that does
not fit the params, integer params, a NaN beta, absurd levels) becomes a ValueError or
TypeError naming the argument and what is allowed, not an error deep inside JAX.

Used by `base.as_mask_fn` (every mask) and, one line each, by the factories
(`float_params` around a method's init, `beta`, `levels`).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxquant.masks import param_paths, path_str

Params = Any

# Simplex methods (md_softmax, md_softmax_s, pmf) hold d logits per weight, so the
# latent and every optimizer slot are d times the model (Adam: 3 d copies). The
# papers use d = 2 (binary), 3 (ternary) and 4 (pmf's 2-bit Q_l); 16 levels are
# 4 bits, past which a d-fold latent costs more than the precision buys (100
# levels would hold 300 copies of the model with Adam).
MAX_SIMPLEX_LEVELS = 16


def _shown(paths: list[str], limit: int = 6) -> str:
    return ", ".join(paths[:limit]) + (" ..." if len(paths) > limit else "") if paths else "(none)"


def _leaf_kind(leaf) -> str:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return f"an array of shape {tuple(leaf.shape)} and dtype {leaf.dtype}"
    return f"{type(leaf).__name__} {leaf!r}"


def _masked_out(x) -> bool:
    """A leaf that an enclosing `optax.masked` / `optax.partition` has masked out."""
    return isinstance(x, optax.MaskedNode)


def mask_leaves(mask: Params, name: str = "mask") -> None:
    """TypeError unless every leaf of `mask` is a bool (Python or numpy scalar)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(mask, is_leaf=_masked_out)[0]:
        if not isinstance(leaf, (bool, np.bool_)) and not _masked_out(leaf):
            raise TypeError(
                f"{name} leaf {path_str(path) or '<root>'!r} is {_leaf_kind(leaf)}; a mask holds "
                f"one Python bool per params leaf (True: quantize that leaf), e.g. "
                f"jq.quant_mask(params, exclude=['.*bias']).")


def mask_for(mask: Params, params: Params, name: str = "mask") -> Params:
    """`mask`, checked to be a pytree of bools with exactly the structure of `params`
    (ValueError naming the paths that differ, TypeError for a non-bool leaf)."""
    if jax.tree.structure(mask, is_leaf=_masked_out) != jax.tree.structure(params, is_leaf=_masked_out):
        have, want = param_paths(mask), param_paths(params)
        extra = [p for p in have if p not in want]
        missing = [p for p in want if p not in have]
        raise ValueError(
            f"{name} does not have the structure of the params pytree: params leaves it lacks: "
            f"{_shown(missing)}; mask leaves params lack: {_shown(extra)}. Give one bool per "
            f"params leaf (same nesting and container types), e.g. jq.quant_mask(params, "
            f"exclude=['.*bias']), or a function params -> such a tree.")
    mask_leaves(mask, name)
    return mask


def float_params(init: Callable[[Params], Any], name: str = "method.init") -> Callable[[Params], Any]:
    """`init` that first checks that every leaf of the params is a floating-point array.

    An integer leaf would be rounded by every optimizer step (Adam turns 1 into 0) or
    fail inside a random initialiser; TypeError naming the leaf instead.
    """
    def checked(params):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            dtype = getattr(leaf, "dtype", None)
            if dtype is None:
                dtype = np.asarray(leaf).dtype
            if not jnp.issubdtype(dtype, jnp.floating):
                raise TypeError(
                    f"{name}: params leaf {path_str(path) or '<root>'!r} has dtype {dtype}; "
                    f"quantization methods train floating-point params. Cast them first, e.g. "
                    f"params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params).")
        return init(params)
    return checked


def beta(value, name: str = "beta"):
    """`value` if it is a schedule (callable) or a finite number > 0; ValueError /
    TypeError naming `name` otherwise (beta scales the mirror map: beta <= 0 or NaN
    makes every step meaningless)."""
    if callable(value):
        return value
    if isinstance(value, (bool, str, bytes)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a number > 0 or a schedule step -> beta, got {value!r}.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number > 0 or a schedule step -> beta, "
                        f"got {value!r}.") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0 (or a schedule), got {value!r}.")
    return value


def levels(d, name: str = "levels", high: int = MAX_SIMPLEX_LEVELS) -> int:
    """`d` as an int if it is an integer in [2, high]; ValueError naming `name` otherwise."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer, float)) or int(d) != d \
            or not 2 <= d <= high:
        raise ValueError(f"{name} must be an integer in 2..{high} (config.method.levels), got "
                         f"{d!r}: a simplex latent holds one logit per level and weight, and "
                         f"{high} levels are 4 bits.")
    return int(d)
