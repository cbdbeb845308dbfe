"""Which parameters are quantized: ordered regex rules on '/'-joined param paths.

Rules follow big_vision's convention: `include` and `exclude` are lists of
regexes matched with `re.fullmatch` against paths such as
`Conv_0/kernel` or `stage1_block0/conv1/kernel`. A leaf is quantized when it
matches some `include` rule and no `exclude` rule.
"""
from __future__ import annotations

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
