"""Quantizers: pure functions from real tensors to quantization levels.

Formulas follow ../shared/reference/METHODS.md (md-bnn, ProxQuant, MetaQuant,
DoReFa, L-DNQ, con-qat). The hard quantizers carry no gradient rule of their
own; wrap them with `straight_through` (identity STE), `gated_straight_through`
(hard-tanh-gated STE) or, for any other backward, `with_gradient_of` for
training. `dorefa_weight(ste=True)` and `bwn_ste` hold the published backward
rules of DoReFa and BWN, including MetaQuant's (`one_bit_backward='tanh'`,
`backward='alpha_gated'`).
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


DOREFA_ONE_BIT_BACKWARDS = ("identity", "tanh")


def dorefa_weight(w: Array, bits: int, scale: bool = False, ste: bool = False,
                  detach_max: bool = False, one_bit_backward: str = "identity") -> Array:
    """DoReFa weights: 2 q_k(tanh w / (2 max|tanh w|) + 1/2) - 1, in [-1, 1].

    At 1 bit this is sign(w) (levels ±1). With `scale`, the result is
    multiplied by E = stop_grad(mean|w|) (PD-QAT at every bit width;
    DoReFa's own 1-bit rule E·sign(w)).
    With `ste`, gradients follow DoReFa (Zhou et al. 2016): straight through
    the rounding, true gradient through tanh and the max normaliser;
    `detach_max` stops the gradient through m = max|tanh w| (MetaQuant's
    variant), giving d/dw = (1 - tanh² w) / m. At 1 bit `one_bit_backward` picks:
      'identity': straight through sign, d/dw = 1 (DoReFa's 1-bit rule);
      'tanh':     the k-bit rule kept at 1 bit, d/dw = d/dw [tanh(w) / m], i.e.
                  (1 - tanh² w) / m with `detach_max` (MetaQuant's released
                  utils/quantize.py, whose 1-bit forward is 2 q_1(W̃) - 1 with the
                  STE through the rounding only and m detached).
    Either way times E with `scale`. Without `ste` no gradient rule is implied.
    """
    bits = check_bits(bits)
    if one_bit_backward not in DOREFA_ONE_BIT_BACKWARDS:
        raise ValueError(f"one_bit_backward must be one of {', '.join(DOREFA_ONE_BIT_BACKWARDS)}, "
                         f"got {one_bit_backward!r}.")
    t = jnp.tanh(w)
    m = jnp.maximum(jnp.max(jnp.abs(t)), jnp.finfo(t.dtype).tiny)
    if detach_max:
        m = jax.lax.stop_gradient(m)
    if bits == 1 and not ste:
        q = sign(w)
    elif bits == 1:
        surrogate = (lambda x: x) if one_bit_backward == "identity" else (lambda x: jnp.tanh(x) / m)
        q = with_gradient_of(sign, surrogate)(w)
    else:
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


BWN_BACKWARDS = ("identity", "alpha_gated")


def bwn_ste(w: Array, backward: str = "identity") -> Array:
    """BWN forward alpha sign(w) (alpha = stop_grad(mean|w|)) with a straight-through backward.

    'identity':    d/dw = 1, the identity STE over the whole quantizer;
    'alpha_gated': d/dw = alpha 1_{|w| <= 1}, the hard-tanh STE through sign times the
                   detached alpha (MetaQuant's released utils/quantize.py: Function_BWN's
                   backward is the gate 1_{|w| <= 1}, and its output is scaled by alpha).
    """
    if backward not in BWN_BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(BWN_BACKWARDS)}, got {backward!r}.")
    if backward == "identity":
        return straight_through(bwn)(w)
    return jax.lax.stop_gradient(jnp.mean(jnp.abs(w))) * gated_straight_through(sign)(w)


def _rows(x: Array, by_row: bool) -> Array:
    """x as a (rows, d) matrix: one row per output unit (last axis) or one row in all."""
    if by_row and x.ndim >= 2:
        return jnp.moveaxis(x, -1, 0).reshape(x.shape[-1], -1)
    return x.reshape(1, -1)


def _unrows(w: Array, shape, by_row: bool) -> Array:
    if by_row and len(shape) >= 2:
        return jnp.moveaxis(w.reshape((shape[-1], *shape[:-1])), 0, -1)
    return w.reshape(shape)


def _batch_cg(a: Array, b: Array, x: Array, eps: float = 1e-6) -> Array:
    """k conjugate-gradient steps on a x = b for a batch of k x k systems (a: (n, k, k))."""
    r = b - jnp.einsum("nkl,nl->nk", a, x)
    p, rtr = r, jnp.sum(r * r, axis=1, keepdims=True)
    for _ in range(a.shape[-1]):
        ap = jnp.einsum("nkl,nl->nk", a, p)
        step = rtr / (jnp.sum(p * ap, axis=1, keepdims=True) + eps)
        x, r = x + step * p, r - step * ap
        rtr_new = jnp.sum(r * r, axis=1, keepdims=True)
        p, rtr = r + rtr_new / (rtr + eps) * p, rtr_new
    return x


def _nearest_code(w: Array, alpha: Array, codes: Array) -> Array:
    """Per row, the sign vector b in `codes` (2^k, k) whose value <b, alpha> is nearest each w.

    w: (n, d), alpha: (n, k) -> (n, d, k). Ties between two codes go to the upper one
    (the binary search of Xu et al.).
    """
    values = alpha @ codes.T                              # (n, 2^k)
    order = jnp.argsort(values, axis=1)
    ranked = jnp.take_along_axis(values, order, axis=1)
    mids = 0.5 * (ranked[:, 1:] + ranked[:, :-1])
    pos = jax.vmap(lambda m, v: jnp.searchsorted(m, v, side="right"))(mids, w)
    return codes[jnp.take_along_axis(order, pos, axis=1)]


def alternating_multibit(x: Array, bits: int, rounds: int = 3, by_row: bool = True) -> Array:
    """Greedy + alternating multi-bit quantization (Xu et al., ICLR'18), as ProxQuant uses it.

    x ~ sum_i alpha_i b_i with b_i in {-1, +1}^d and alpha_1 >= ... >= alpha_k >= 0 per row:
      greedy:       r_0 = x; b_i = sign(r_{i-1}), alpha_i = mean|r_{i-1}|, r_i = r_{i-1} - alpha_i b_i;
      alternating:  (rounds - 1 times, k > 1) alpha <- argmin ||x - B alpha||^2 (k conjugate-
                    gradient steps on B^T B alpha = B^T x from the current alpha, as the
                    ProxQuant code does), alpha <- |alpha| sorted descending, then every entry
                    takes the nearest of the 2^k values sum_i +-alpha_i (Xu et al.'s binary
                    search; the ProxQuant code assigns greedily at <= 3 bits per row, which
                    is the same at 2 bits).
    Rows (`by_row`, x.ndim >= 2): one alpha vector per output unit, the last axis of a Flax
    kernel (Dense (in, out), Conv (kh, kw, in, out)) = a row of PyTorch's (out, ...) weight;
    otherwise one alpha vector for the whole tensor. sign(0) = +1 (the code breaks the tie at
    random). Shapes: x (...) -> same shape. At 1 bit this is mean|x| sign(x) per row.
    """
    bits = check_bits(bits)
    w = _rows(x, by_row)
    r, planes, alphas = w, [], []
    for _ in range(bits):
        b, a = sign(r), jnp.mean(jnp.abs(r), axis=1, keepdims=True)
        r = r - a * b
        planes.append(b)
        alphas.append(a)
    planes, alpha = jnp.stack(planes, axis=-1), jnp.concatenate(alphas, axis=1)
    if bits > 1:
        grid = jnp.indices((2,) * bits).reshape(bits, -1).T
        codes = (1.0 - 2.0 * grid).astype(w.dtype)       # (2^k, k) sign vectors
        for _ in range(int(rounds) - 1):
            gram = jnp.einsum("ndk,ndl->nkl", planes, planes)
            alpha = _batch_cg(gram, jnp.einsum("ndk,nd->nk", planes, w), alpha)
            alpha = -jnp.sort(-jnp.abs(alpha), axis=1)
            planes = _nearest_code(w, alpha, codes)
    return _unrows(jnp.einsum("ndk,nk->nd", planes, alpha), x.shape, by_row).astype(x.dtype)


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


def with_gradient_of(q: Callable[[Array], Array],
                     surrogate: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Forward exactly q(x), backward the gradient of surrogate(x) (a custom-gradient wrapper).

    Written as sg(q(x)) + (s(x) - sg(s(x))) (sg = stop_gradient): the second term is
    exactly 0 in the forward pass, so the forward value is bit-identical to q(x), and
    unlike a custom_vjp it may close over traced values.
    """
    def f(x):
        s = surrogate(x)
        return jax.lax.stop_gradient(q(x)) + (s - jax.lax.stop_gradient(s))
    return f


def straight_through(q: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Identity STE: forward exactly q(x), backward d/dx = 1."""
    return with_gradient_of(q, lambda x: x)


def gated_straight_through(q: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Hard-tanh-gated STE (Hubara et al. 2016): forward exactly q(x), d/dx = 1_{|x| <= 1}."""
    return with_gradient_of(
        q, lambda x: jax.lax.stop_gradient((jnp.abs(x) <= 1.0).astype(x.dtype)) * x)
