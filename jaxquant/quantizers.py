"""Quantizers: pure functions from real tensors to quantization levels.

Formulas follow ../shared/reference/METHODS.md (md-bnn, ProxQuant, MetaQuant,
DoReFa, L-DNQ, con-qat). None of these functions carries a gradient rule of
its own; wrap them with `straight_through` (identity STE) or
`gated_straight_through` (hard-tanh-gated STE) for training.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def check_bits(bits: int, name: str = "bits") -> int:
    """Validate a bit width: an integer in 1..8 (returned as a Python int)."""
    try:
        ok = not isinstance(bits, (bool, str)) and int(bits) == bits and 1 <= int(bits) <= 8
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer in 1..8, got {bits!r}.")
    return int(bits)


def sign(x: Array) -> Array:
    """Binary levels {-1, +1}: sign(x) with sign(0) = +1."""
    return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def ternary(x: Array, threshold: float | Array = 0.5) -> Array:
    """Ternary levels {-1, 0, +1}: -1 if x <= -t, +1 if x >= t, else 0."""
    return (jnp.where(x >= threshold, 1.0, 0.0) - jnp.where(x <= -threshold, 1.0, 0.0)).astype(x.dtype)


def twn(x: Array, ratio: float = 0.7) -> Array:
    """TWN ternarization (Li & Liu 2016) with per-tensor asymmetric scales.

    Delta = ratio * mean|x|; entries >= Delta -> mean of those entries,
    entries <= -Delta -> mean of those entries, the rest -> 0.
    """
    delta = ratio * jnp.mean(jnp.abs(x))
    pos, neg = x >= delta, x <= -delta
    mean_pos = jnp.sum(jnp.where(pos, x, 0.0)) / jnp.maximum(jnp.sum(pos), 1)
    mean_neg = jnp.sum(jnp.where(neg, x, 0.0)) / jnp.maximum(jnp.sum(neg), 1)
    return jnp.where(pos, mean_pos, jnp.where(neg, mean_neg, 0.0)).astype(x.dtype)


def uniform(x: Array, bits: int, ste: bool = False) -> Array:
    """k-bit uniform quantizer on [0, 1]: q_k(x) = round((2^k - 1) x) / (2^k - 1).

    With `ste`, the gradient passes straight through the rounding only
    (DoReFa's rule): d q_k / dx = 1.
    """
    n = 2.0 ** check_bits(bits) - 1.0
    rnd = straight_through(jnp.round) if ste else jnp.round
    return rnd(x * n) / n


def dorefa_weight(w: Array, bits: int, scale: bool = False, ste: bool = False,
                  detach_max: bool = False) -> Array:
    """DoReFa weights: 2 q_k(tanh w / (2 max|tanh w|) + 1/2) - 1, in [-1, 1].

    At 1 bit this is sign(w) (levels ±1). With `scale`, the result is
    multiplied by E = stop_grad(mean|w|) (PD-QAT at every bit width;
    DoReFa's own 1-bit rule E·sign(w)).
    With `ste`, gradients follow DoReFa (Zhou et al. 2016): straight through
    the rounding (and through sign at 1 bit), true gradient through tanh and
    the max normaliser; `detach_max` stops the gradient through max|tanh w|
    (MetaQuant's variant). Without `ste` no gradient rule is implied.
    """
    bits = check_bits(bits)
    if bits == 1:
        q = straight_through(sign)(w) if ste else sign(w)
    else:
        t = jnp.tanh(w)
        m = jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(t.dtype).tiny)
        if detach_max:
            m = jax.lax.stop_gradient(m)
        q = 2.0 * uniform(t / (2.0 * m) + 0.5, bits, ste=ste) - 1.0
    if scale:
        q = q * jax.lax.stop_gradient(jnp.mean(jnp.abs(w)))
    return q


def dorefa_activation(x: Array, bits: int, ste: bool = False) -> Array:
    """DoReFa activations: q_k(clip(x, 0, 1)).

    With `ste`, straight through the rounding; the clip keeps its own
    gradient (1 on [0, 1], 0 outside).
    """
    return uniform(jnp.clip(x, 0.0, 1.0), bits, ste=ste)


def bwn(w: Array) -> Array:
    """Binary-weight network (Rastegari et al. 2016): alpha sign(w), alpha = mean|w| per tensor.

    alpha is stop-gradiented (MetaQuant's BWN forward); wrap in an STE to train.
    """
    return jax.lax.stop_gradient(jnp.mean(jnp.abs(w))) * sign(w)


def pow2_codebook(levels: int, alpha: float | Array = 1.0) -> Array:
    """Symmetric power-of-two codebook with `levels` entries (3, 5, 7, 9, 11).

    3 -> {0, ±a}; 5 -> {0, ±a, ±2a}; 7 -> adds ±4a; 9 -> ±8a; 11 -> ±16a.
    Returned sorted ascending.
    """
    if levels not in (3, 5, 7, 9, 11):
        raise ValueError(f"levels must be one of 3, 5, 7, 9, 11, got {levels!r}.")
    pos = 2.0 ** jnp.arange((levels - 1) // 2)
    return alpha * jnp.concatenate([-pos[::-1], jnp.zeros(1), pos])


def nearest(x: Array, codebook: Array) -> Array:
    """Project each entry of x onto the nearest level of a sorted codebook.

    Thresholds at the midpoints between consecutive levels; a tie goes to
    the upper level.
    """
    mids = 0.5 * (codebook[1:] + codebook[:-1])
    return codebook[jnp.searchsorted(mids, x, side="right")]


def straight_through(q: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Identity STE: forward exactly q(x), backward d/dx = 1.

    Written as sg(q(x)) + (x - sg(x)) (sg = stop_gradient): the second term is
    exactly 0 in the forward pass, so the forward value is bit-identical to
    q(x), and unlike a custom_vjp it may close over traced values.
    """
    def f(x):
        return jax.lax.stop_gradient(q(x)) + (x - jax.lax.stop_gradient(x))
    return f


def gated_straight_through(q: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Hard-tanh-gated STE (Hubara et al. 2016): forward exactly q(x), d/dx = 1_{|x| <= 1}."""
    def f(x):
        gate = jax.lax.stop_gradient((jnp.abs(x) <= 1.0).astype(x.dtype))
        return jax.lax.stop_gradient(q(x)) + gate * (x - jax.lax.stop_gradient(x))
    return f
