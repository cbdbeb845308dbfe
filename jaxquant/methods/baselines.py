"""Baselines: STE on any quantizer, BinaryConnect (two published variants), BWN, DoReFa.

Every baseline keeps the full-precision weights as the latent (init = identity),
runs the forward pass at Q(latent) with a straight-through gradient, and rounds
with the same Q (no STE) for evaluation and export. Formulas: METHODS.md §2
(ProxQuant's lazy projection = BinaryConnect), §3 (BWN), §6 (DoReFa).

Notebook use, on any params pytree::

    method = jq.binary_connect(optax.adam(1e-2), mask=lambda p: jq.quant_mask(p, exclude=[".*bias"]))
    latent = method.init(params); opt_state = method.tx.init(latent)
    loss = loss_fn(method.forward(latent, step)) ...; evaluate on method.project(latent)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxquant import quantizers as Q
from jaxquant.errors import ConfigError
from jaxquant.methods import checks
from jaxquant.methods.base import (Context, MaskLike, Method, as_mask_fn, masked_map,
                                   method_options)

Params = Any
Array = jax.Array

QUANTIZERS = ("sign", "ternary", "twn", "bwn", "dorefa", "pow2", "absmean")
BITNET_WEIGHTS = ("ternary", "binary")
BC_VARIANTS = ("md_bnn", "proxquant")


def quantizer(name: str, *, bits: int = 1, threshold: float = 0.5, ratio: float = 0.7,
              levels: int = 3, alpha: Optional[float] = None,
              scale: bool = False, eps: float = Q.BITNET_EPS) -> Callable[[Array], Array]:
    """The hard quantizer called `name`, as a function of one tensor (no gradient rule).

    sign:    sign(w), sign(0) = +1                          (levels ±1)
    ternary: -1 if w <= -threshold, +1 if w >= threshold, else 0
    twn:     TWN with Delta = ratio * mean|w| and asymmetric means
    bwn:     mean|w| * sign(w)
    dorefa:  DoReFa k-bit weights (`bits`), times mean|w| if `scale`
    pow2:    nearest level of the power-of-two codebook with `levels` entries and
             step alpha (alpha = mean|w| per tensor when None or 0, L-DNQ's alpha_0)
    absmean: BitNet b1.58's clip(round(w / s), -1, 1) s, s = mean|w| + eps per tensor
    """
    if name == "sign":
        return Q.sign
    if name == "ternary":
        return lambda w: Q.ternary(w, threshold)
    if name == "twn":
        return lambda w: Q.twn(w, ratio)
    if name == "bwn":
        return Q.bwn
    if name == "dorefa":
        bits = Q.check_bits(bits, "config.method.bits")
        return lambda w: Q.dorefa_weight(w, bits, scale=scale)
    if name == "pow2":
        Q.pow2_codebook(levels)  # validates `levels` now, not at trace time

        def pow2(w):
            a = alpha if alpha else jax.lax.stop_gradient(jnp.mean(jnp.abs(w)))
            return Q.nearest(w, Q.pow2_codebook(levels, a).astype(w.dtype))
        return pow2
    if name == "absmean":
        return lambda w: Q.absmean_ternary(w, eps)
    raise ConfigError(f"unknown quantizer {name!r} (config.method.quantizer). "
                     f"Valid quantizers: {', '.join(QUANTIZERS)}.")


def _method(forward_q: Callable[[Array], Array], project_q: Callable[[Array], Array],
            tx: optax.GradientTransformation, mask: MaskLike) -> Method:
    """latent = params; forward/project apply forward_q/project_q to the masked leaves."""
    mask_fn = as_mask_fn(mask)
    return Method(
        init=checks.float_params(lambda params: params),
        forward=lambda latent, step: masked_map(forward_q, mask_fn(latent), latent),
        project=lambda latent: masked_map(project_q, mask_fn(latent), latent),
        tx=tx)


class ClipLatentsState(NamedTuple):
    """clip_latents is stateless."""


def clip_latents(low: float = -1.0, high: float = 1.0) -> optax.GradientTransformation:
    """Keep latents in a box after the step: theta_{t+1} = clip(theta_t + u_t, low, high).

    ProxQuant's lazy projection (= BinaryConnect, Courbariaux et al. 2015) clips the
    quantized latents to [-1, 1] after every step. Restrict it to the quantized
    leaves with `optax.masked(clip_latents(), mask)`.
    """
    def init(params):
        del params
        return ClipLatentsState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("clip_latents needs the params: call tx.update(updates, state, params).")
        new = jax.tree.map(lambda p, u: jnp.clip(p + u, low, high) - p, params, updates)
        return new, state

    return optax.GradientTransformation(init, update)


def _choice(value: str, valid: tuple, key: str) -> str:
    if value not in valid:
        raise ConfigError(f"unknown {key} {value!r}. Valid choices: {', '.join(valid)}.")
    return value


def ste(optimizer: optax.GradientTransformation, quantizer_name: str = "sign", *,
        mask: MaskLike = None, gated: bool = False, **quantizer_kwargs) -> Method:
    """Straight-through estimator over any quantizer (see `quantizer`).

    forward: Q(w) with gradient 1 (identity STE) or 1_{|w| <= 1} (`gated`, hard-tanh STE);
    project: Q(w); tx: `optimizer` on every leaf. MetaQuant's STE rules (alpha 1_{|w| <= 1}
    for BWN, (1 - tanh² w) / max|tanh w| for 1-bit DoReFa) are the `bwn` method's `backward`
    and the `dorefa` method's `one_bit_backward`.
    """
    q = quantizer(quantizer_name, **quantizer_kwargs)
    wrap = Q.gated_straight_through if gated else Q.straight_through
    return _method(wrap(q), q, optimizer, mask)


def binary_connect(optimizer: optax.GradientTransformation, *, mask: MaskLike = None,
                   variant: str = "md_bnn") -> Method:
    """BinaryConnect (Courbariaux et al. 2015): forward at sign(w), step on w.

    variant 'md_bnn':    hard-tanh-gated STE, gradient 1_{|w| <= 1}, no latent clipping
                         (the BC baseline of md-bnn / PMF).
    variant 'proxquant': identity STE, quantized latents clipped to [-1, 1] after each
                         step (ProxQuant's lazy projection, METHODS.md §2).
    """
    if variant == "md_bnn":
        return _method(Q.gated_straight_through(Q.sign), Q.sign, optimizer, mask)
    if variant == "proxquant":
        return lazy_projection(optimizer, Q.sign, mask=mask)
    raise ConfigError(f"unknown BinaryConnect variant {variant!r} (config.method.variant). "
                     f"Valid variants: {', '.join(BC_VARIANTS)}.")


def lazy_projection(optimizer: optax.GradientTransformation, quantize: Callable[[Array], Array],
                    *, mask: MaskLike = None) -> Method:
    """The straight-through gradient method with quantizer q (ProxQuant's "lazy projection",
    Bai et al., ICLR'19, eq. 3; BinaryConnect when q = sign):

        theta_{t+1} = clip(theta_t - eta_t grad L(w)|_{w = q(theta_t)}, -1, 1)

    forward q(theta) with the identity straight-through gradient, the optimizer's step on
    theta, the quantized latents clipped to [-1, 1]; project: q(theta). With q the greedy +
    alternating multi-bit quantizer this is Xu et al. (ICLR'18)'s alternating quantization
    trained with the STE, the baseline of ProxQuant's LSTM experiment.
    """
    tx = optax.chain(optimizer, optax.masked(clip_latents(-1.0, 1.0), as_mask_fn(mask)))
    return _method(Q.straight_through(quantize), quantize, tx, mask)


def bwn(optimizer: optax.GradientTransformation, *, mask: MaskLike = None,
        backward: str = "identity") -> Method:
    """Binary-weight network: forward alpha sign(w), alpha = stop_grad(mean|w|) per tensor.

    backward 'identity' (default): d/dw = 1, the identity STE over the whole quantizer.
    backward 'alpha_gated': d/dw = alpha 1_{|w| <= 1}, the STE of MetaQuant's released code
    (utils/quantize.py), which produced the BWN / STE cells of MetaQuant's Table 1: under
    SGD its steps are ~alpha times the identity STE's (alpha ~ 1e-2 .. 1e-1 on a ResNet).
    """
    _choice(backward, Q.BWN_BACKWARDS, "config.method.backward")
    fwd = lambda w: Q.bwn_ste(w, backward)  # noqa: E731
    return _method(fwd, Q.bwn, optimizer, mask)


def dorefa(optimizer: optax.GradientTransformation, weight_bits: int = 1, *,
           mask: MaskLike = None, one_bit_scale: bool = True,
           detach_max: bool = False, one_bit_backward: str = "identity") -> Method:
    """DoReFa-Net weights (Zhou et al. 2016, METHODS.md §6).

    k > 1 bits: w_q = 2 q_k(tanh w / (2 max|tanh w|) + 1/2) - 1, with the STE through
    the rounding only (true gradient through tanh and the max; `detach_max` stops
    it through the max, as MetaQuant does: d w_q / dw = (1 - tanh² w) / max|tanh w|).
    k = 1: w_q = E sign(w), E = stop_grad(mean|w|) (sign(w) without `one_bit_scale`), with
    `one_bit_backward` 'identity' (default, DoReFa's rule: straight through sign, d/dw = 1)
    or 'tanh' (MetaQuant's released utils/quantize.py, behind the dorefa / STE cells of its
    Table 1: the k-bit rule kept at 1 bit, d/dw = (1 - tanh² w) / max|tanh w|, times E).
    Activations are a model switch (`config.model.act_bits`), not part of this method.
    """
    bits = Q.check_bits(weight_bits, "config.method.weight_bits")
    _choice(one_bit_backward, Q.DOREFA_ONE_BIT_BACKWARDS, "config.method.one_bit_backward")
    scale = one_bit_scale and bits == 1
    fwd = lambda w: Q.dorefa_weight(w, bits, scale=scale, ste=True, detach_max=detach_max,  # noqa: E731
                                    one_bit_backward=one_bit_backward)
    hard = lambda w: Q.dorefa_weight(w, bits, scale=scale)  # noqa: E731
    return _method(fwd, hard, optimizer, mask)


def bitnet(optimizer: optax.GradientTransformation, *, mask: MaskLike = None,
           weights: str = "ternary", eps: float = Q.BITNET_EPS) -> Method:
    """BitNet's weights with the identity straight-through gradient (Ma et al. 2024; Wang et al. 2023).

    weights 'ternary' (BitNet b1.58): forward clip(round(w / s), -1, 1) s, s = mean|w| + eps
    per tensor (`quantizers.absmean_ternary`), d/dw = 1; this is `ste` with the 'absmean'
    quantizer. weights 'binary' (for comparison): mean|w| sign(w), d/dw = 1, i.e. `bwn`.
    The per-token absmax 8-bit activations of BitNet are a model switch (the transformer's
    `config.model.absmax_act_bits`, `quantizers.absmax_activation`), not part of the method.
    """
    _choice(weights, BITNET_WEIGHTS, "config.method.weights")
    if weights == "binary":
        return bwn(optimizer, mask=mask)
    return ste(optimizer, "absmean", mask=mask, eps=eps)


# The `config.method` keys each baseline reads, with their defaults (config_check
# rejects any other key).
DEFAULTS = {
    "ste": dict(quantizer="sign", gated=False, bits=1, threshold=0.5, ratio=0.7, levels=3,
                alpha=None, scale=False, eps=Q.BITNET_EPS),
    "binary_connect": dict(variant="md_bnn"),
    "bwn": dict(backward="identity"),
    "dorefa": dict(weight_bits=1, one_bit_scale=True, detach_max=False, one_bit_backward="identity"),
    "bitnet": dict(weights="ternary", eps=Q.BITNET_EPS),
}


def from_config(name: str, ctx: Context) -> Method:
    """Build `name` (ste | binary_connect | bwn | dorefa | bitnet) from `ctx.config.method`."""
    get = method_options("baselines", name, ctx, DEFAULTS).get
    if name == "ste":
        return ste(ctx.optimizer, get("quantizer"), mask=ctx.mask, gated=bool(get("gated")),
                   bits=get("bits"), threshold=get("threshold"), ratio=get("ratio"),
                   levels=get("levels"), alpha=get("alpha"), scale=bool(get("scale")),
                   eps=float(get("eps")))
    if name == "binary_connect":
        return binary_connect(ctx.optimizer, mask=ctx.mask, variant=get("variant"))
    if name == "bwn":
        return bwn(ctx.optimizer, mask=ctx.mask, backward=get("backward"))
    if name == "bitnet":
        return bitnet(ctx.optimizer, mask=ctx.mask, weights=get("weights"), eps=float(get("eps")))
    return dorefa(ctx.optimizer, get("weight_bits"), mask=ctx.mask,
                  one_bit_scale=bool(get("one_bit_scale")), detach_max=bool(get("detach_max")),
                  one_bit_backward=get("one_bit_backward"))
