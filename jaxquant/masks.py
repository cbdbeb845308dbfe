"""Which parameters are quantized: ordered regex rules on '/'-joined param paths.

Rules follow big_vision's convention: `include` and `exclude` are lists of
regexes matched with `re.fullmatch` against paths such as
`Conv_0/kernel` or `stage1_block0/conv1/kernel`. A leaf is quantized when it
matches some `include` rule and no `exclude` rule.

`config.quant.full_precision_layers` names whole layers (param path prefixes
such as `stage2_block0/shortcut`) kept at 32 bits: `full_precision_layers`
resolves it (also from a previous run's ranking, "top:k:<path>") and
`layer_excludes` turns the names into exclude rules.
"""
from __future__ import annotations

import json
import os
import re
from typing import Sequence

import jax

from jaxquant.errors import UserError


class MaskError(UserError):
    """A rule matches no parameter, or is not a valid regex."""


def path_str(path) -> str:
    """'/'-joined name of a pytree key path."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def param_paths(params) -> list[str]:
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _compile(rules: Sequence[str], kind: str):
    out = []
    for r in rules:
        try:
            out.append(re.compile(r))
        except re.error as e:
            raise MaskError(f"config.quant.{kind} rule {r!r} is not a valid regex ({e}).") from None
    return out


def quant_mask(params, include: Sequence[str] = (".*",), exclude: Sequence[str] = (),
               strict: bool = True):
    """Pytree of bools like `params`: True where the leaf is quantized.

    With `strict`, a rule that matches no parameter path raises `MaskError`
    naming the rule and listing the paths, since it is almost always a typo.
    """
    inc, exc = _compile(include, "include"), _compile(exclude, "exclude")
    paths = param_paths(params)
    if strict:
        for kind, rules in (("include", inc), ("exclude", exc)):
            for r in rules:
                if not any(r.fullmatch(p) for p in paths):
                    shown = ", ".join(paths[:12]) + (" ..." if len(paths) > 12 else "")
                    raise MaskError(
                        f"config.quant.{kind} rule {r.pattern!r} matches no parameter. "
                        f"Parameter paths are: {shown}. Fix the rule (it is matched with "
                        f"re.fullmatch against the whole path).")

    def leaf(path, _):
        p = path_str(path)
        return any(r.fullmatch(p) for r in inc) and not any(r.fullmatch(p) for r in exc)

    return jax.tree_util.tree_map_with_path(leaf, params)


METHOD_STATE = "method_state.json"  # a run's method state (train.py writes it), with "ranking"


def _ranking(path: str) -> list[str]:
    file = os.path.join(path, METHOD_STATE) if os.path.isdir(path) else path
    try:
        with open(file) as f:
            ranking = json.load(f)["ranking"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MaskError(
            f"config.quant.full_precision_layers: cannot read a layer ranking from {file!r} "
            f"({type(e).__name__}: {e}); give the {METHOD_STATE} of a finished layer-wise "
            f"PD-QAT run (or its workdir).") from None
    return [str(n) for n in ranking]


def full_precision_layers(spec, params=None) -> list[str]:
    """Layer names from `config.quant.full_precision_layers`.

    '' -> none; 'a/conv1,b/shortcut' -> those layers; 'top:k:<path>' -> the first k
    names of the "ranking" list in <path> (a `method_state.json`, or a workdir
    holding one: PD-QAT ranks layers by their final dual variable, largest first).
    A list/tuple of names is accepted too. With `params`, every name must be the
    path prefix of some parameter (else `MaskError` listing the layers).
    """
    if isinstance(spec, (list, tuple)):
        names = [str(n) for n in spec]
    elif not spec:
        names = []
    elif str(spec).startswith("top:"):
        m = re.fullmatch(r"top:(\d+):(.+)", str(spec))
        if not m:
            raise MaskError(f"config.quant.full_precision_layers={spec!r}: write 'top:<k>:<path to "
                            f"{METHOD_STATE} or its workdir>' or a comma-separated list of layers.")
        names = _ranking(m.group(2))[: int(m.group(1))]
    else:
        names = [n.strip() for n in str(spec).split(",") if n.strip()]
    if params is not None:
        paths = param_paths(params)
        layers = sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p})
        for n in names:
            if not any(p.startswith(n + "/") for p in paths):
                raise MaskError(f"config.quant.full_precision_layers names {n!r}, which is no layer "
                                f"of this model. Layers are: {', '.join(layers)}.")
    return names


def layer_excludes(names: Sequence[str]) -> list[str]:
    """Exclude rules (for `quant_mask`) that keep every parameter of the named layers unquantized."""
    return [re.escape(n) + "/.*" for n in names]
