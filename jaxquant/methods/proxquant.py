"""ProxQuant: binary, ternary and multi-bit proximal quantization (Bai, Wang & Liberty, ICLR'19).

The latent is the full-precision theta; the forward and backward passes run at theta;
after the optimizer's step u_t every quantized tensor takes a proximal step toward
the quantization set and is clipped to [-1, 1] (METHODS.md section 2):

    theta_{t+1} = clip(prox(theta_t + u_t, s_t), -1, 1),   s_t = lr_t * lambda_t,
    lambda_t = reg_rate * epoch(t)   (homotopy, epoch 0-based).

From `freeze_epoch` on the quantized tensors are hard-set to Q(theta) and frozen while
the other leaves (BatchNorm, shortcut convs, biases...) keep training. 'lazy' projection
is BinaryConnect (`baselines.binary_connect(variant='proxquant')`).

Notebook use, on any params pytree::

    mask = lambda p: jq.quant_mask(p, exclude=[".*bias"])
    tx = optax.chain(optax.adam(1e-2),
                     optax.masked(optax.chain(jq.prox_quant(jq.prox_binary, s), jq.clip_latents()), mask))

or the whole method (prox + clip + freeze): `jq.proxquant(optax.adam(1e-2), 1e-2, steps_per_epoch)`.

Paper vs code: the official code rebuilds its optimizer at every epoch
(`utils.adjust_optimizer`: Adam's moments and bias correction restart, so the first step
of each epoch moves every latent with a non-zero gradient by ~lr); the paper describes
plain Adam, which is the default here. `reset_optimizer_every_epoch=True` reproduces the
code, and the paper-table configs (configs/proxquant_cifar10.py) set it, with the code's
ImageNet normalisation of CIFAR and its per-tensor multi-bit default (`by_row=False`;
docs/fidelity.md#proxquant). The code's `freeze_epoch=1`
special case (freeze before any training) is not reproduced: here freeze_epoch = E
trains E epochs with the prox, and 0 means never freeze. kind='multibit' follows the
code's 'mean' prox (one alternating quantization per step; used in the paper for LSTMs,
not by its CIFAR scripts).

Quantized LSTM (the paper's LSTM experiment, code never released): kind='multibit' with 1, 2, 3
bits, against the 'lazy' mode of the same kind (the straight-through gradient method with
Xu et al. 2018's alternating quantizer, eq. 3: theta_{t+1} = theta_t - eta_t grad L(q(theta_t))).
At 1 bit q is mean|theta| sign(theta) per row: a scaled binary, not the unscaled sign of
kind='binary'. configs/lstm_fortunes_*.py run both on a byte-level LSTM.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxquant import quantizers as Q
from jaxquant.errors import ConfigError
from jaxquant.methods import checks
from jaxquant.methods.base import (Context, MaskLike, Method, as_mask_fn, masked_map,
                                   method_options, num_steps_to_epoch, scheduled_step)
from jaxquant.methods.baselines import clip_latents, lazy_projection

Params = Any
Array = jax.Array

KINDS = ("binary", "ternary", "multibit")
PROJECTION_MODES = ("prox", "lazy")

# Every config.method key the method accepts, with the paper's values (PQ-binary,
# CIFAR-10 ResNets). `bits`, `rounds`, `by_row` only matter for kind='multibit',
# `ratio` for kind='ternary'.
DEFAULTS = {
    "proxquant": dict(
        kind="binary",                      # binary | ternary | multibit
        bits=2,                             # multibit: bits per weight
        projection_mode="prox",             # prox (eager, ProxQuant) | lazy (STE on Q; binary: BinaryConnect)
        reg_rate=1e-4,                      # lambda_t = reg_rate * epoch
        freeze_epoch=200,                   # hard-set and freeze from this epoch; 0 = never
        reset_optimizer_every_epoch=False,  # True: the official code's per-epoch optimizer rebuild
        ratio=0.7,                          # ternary: TWN threshold Delta = ratio * mean|theta|
        by_row=True,                        # multibit: one set of scales per output unit
        rounds=3,                           # multibit: greedy + (rounds - 1) alternating refinements
        epoch_steps=0,                      # steps per epoch of the homotopy, freeze and reset; 0 = the data's
    ),
}


# --- proximal operators ----------------------------------------------------------------

def prox_binary(theta: Array, s: Array | float) -> Array:
    """Prox of the W-shaped regularizer s * sum_i min|theta_i -+ 1| (ProxQuant eq. 8).

    theta <- sign(theta) * (1 + sign(|theta| - 1) * max(||theta| - 1| - s, 0)):
    soft-thresholding of |theta| toward 1 by s; at s >= 1 (theta in [-1, 1]) it is sign(theta).
    sign(0) = 0, as in the formula (and torch.sign). Shapes: any -> same.
    """
    mag = jnp.abs(theta) - 1.0
    return jnp.sign(theta) * (1.0 + jnp.sign(mag) * jnp.maximum(jnp.abs(mag) - s, 0.0))


def prox_ternary(theta: Array, s: Array | float, ratio: float = 0.7) -> Array:
    """Ternary prox: theta <- (theta + s * q(theta)) / (1 + s), q = TWN per tensor.

    q: Delta = ratio * mean|theta|; entries >= Delta -> their mean, <= -Delta -> their mean,
    the rest -> 0 (`quantizers.twn`). Shapes: any -> same.
    """
    return (theta + s * Q.twn(theta, ratio)) / (1.0 + s)


def prox_multibit(theta: Array, s: Array | float, bits: int = 2, rounds: int = 3,
                  by_row: bool = True) -> Array:
    """Multi-bit prox: theta <- (theta + s * q_alt(theta)) / (1 + s).

    q_alt = greedy + alternating multi-bit quantization (Xu et al. 2018) with `bits` bits,
    per row (`quantizers.alternating_multibit`). Shapes: any -> same.
    """
    return (theta + s * Q.alternating_multibit(theta, bits, rounds, by_row)) / (1.0 + s)


def _ternary_project(ratio: float) -> Callable[[Array], Array]:
    """TWN, except that a tensor already on three levels {-b, 0, a} is kept as it is.

    TWN is not idempotent (with |a| and |b| far apart it can zero a level), so frozen
    ternary weights would change when evaluated; this keeps them as frozen.
    """
    def q(x):
        hi, lo = jnp.max(x), jnp.min(x)
        on_grid = jnp.all((x == 0) | (x == hi) | (x == lo)) & (hi >= 0) & (lo <= 0)
        return jnp.where(on_grid, x, Q.twn(x, ratio))
    return q


def _operators(kind: str, bits: int, ratio: float, rounds: int, by_row: bool):
    """(prox(theta, s), hard quantizer Q(theta)) of a kind."""
    if kind == "binary":
        return prox_binary, Q.sign
    if kind == "ternary":
        return (lambda t, s: prox_ternary(t, s, ratio)), _ternary_project(ratio)
    if kind == "multibit":
        bits = Q.check_bits(bits, "config.method.bits")
        return ((lambda t, s: prox_multibit(t, s, bits, rounds, by_row)),
                lambda t: Q.alternating_multibit(t, bits, rounds, by_row))
    raise ConfigError(f"unknown ProxQuant kind {kind!r} (config.method.kind). "
                      f"Valid kinds: {', '.join(KINDS)}.")


# --- optax transformations -------------------------------------------------------------

def prox_quant(prox: Callable[[Array, Array], Array],
               strength: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """Eager proximal quantization (Bai et al., ICLR'19, eq. 7).

    theta_{t+1} = prox(theta_t + u_t, s_t), where u_t is the step proposed by the
    preceding transformations of the chain and s_t = strength(t). Restrict it to the
    quantized leaves with `optax.masked`; follow it with `clip_latents()` as the paper does.
    """
    return scheduled_step("prox_quant", lambda p, u, s: prox(p + u, s), strength)


def homotopy_strength(learning_rate: optax.ScalarOrSchedule, reg_rate: float,
                      steps_per_epoch: int) -> optax.Schedule:
    """ProxQuant's prox strength s_t = lr_t * lambda_t, lambda_t = reg_rate * floor(t / steps_per_epoch)."""
    def schedule(count):
        lr = learning_rate(count) if callable(learning_rate) else learning_rate
        return lr * reg_rate * num_steps_to_epoch(count, steps_per_epoch)
    return schedule


class FreezeState(NamedTuple):
    count: jax.Array  # steps taken so far
    frozen: Params    # Q(theta) stored at the freeze step (zeros before)


def freeze_quantized(quantize: Callable[[Array], Array],
                     freeze_step: int) -> optax.GradientTransformation:
    """Hard-set the leaves to their quantized values at `freeze_step` and keep them there.

    With T = freeze_step and u_t the step proposed by the preceding transformations:
      t + 1 < T:  theta_{t+1} = theta_t + u_t            (passes through)
      t + 1 = T:  theta_T = Q(theta_t + u_t)             (stored in the state)
      t + 1 > T:  theta_{t+1} = theta_T                  (frozen)
    (The step after T also removes the last-ulp rounding of theta + (Q - theta).)
    ProxQuant freezes at T = freeze_epoch * steps_per_epoch; use `optax.masked` to freeze
    only the quantized leaves, so BatchNorm and the other leaves keep training.
    """
    T = int(freeze_step)

    def init(params):
        return FreezeState(count=jnp.zeros([], jnp.int32), frozen=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("freeze_quantized needs the params: call tx.update(updates, state, params).")
        t = state.count + 1
        frozen = jax.lax.cond(
            t == T, lambda: jax.tree.map(lambda p, u: quantize(p + u).astype(p.dtype), params, updates),
            lambda: state.frozen)
        out = jax.tree.map(lambda p, u, q: jnp.where(t >= T, q - p, u), params, updates, frozen)
        return out, FreezeState(optax.safe_increment(state.count), frozen)

    return optax.GradientTransformation(init, update)


class ResetState(NamedTuple):
    count: jax.Array  # steps taken so far
    inner: Any        # the wrapped transformation's state


def reset_state_every(inner: optax.GradientTransformation, every_steps: int,
                      keep: Sequence[type] = (optax.ScaleByScheduleState,)
                      ) -> optax.GradientTransformation:
    """Re-initialise `inner`'s state every `every_steps` steps (at t = k * every_steps, k >= 1).

    This reproduces a training loop that rebuilds its optimizer each epoch (the official
    ProxQuant code): Adam's moments and bias-correction count restart. State nodes of a
    type in `keep` survive the reset; by default the learning-rate schedules' step
    counters, so that lr_t follows the global step as the code's epoch regime does.
    """
    every = int(every_steps)
    keep = tuple(keep)

    def init(params):
        return ResetState(count=jnp.zeros([], jnp.int32), inner=inner.init(params))

    def update(updates, state, params=None):
        reset = (state.count > 0) & (state.count % every == 0)
        fresh = inner.init(params if params is not None else updates)
        inner_state = jax.tree.map(
            lambda f, o: o if isinstance(f, keep) else jnp.where(reset, f, o),
            fresh, state.inner, is_leaf=lambda x: isinstance(x, keep))
        out, inner_state = inner.update(updates, inner_state, params)
        return out, ResetState(optax.safe_increment(state.count), inner_state)

    return optax.GradientTransformation(init, update)


# --- the method ------------------------------------------------------------------------

def proxquant(optimizer: optax.GradientTransformation, learning_rate: optax.ScalarOrSchedule,
              steps_per_epoch: int, *, kind: str = "binary", bits: int = 2,
              projection_mode: str = "prox", reg_rate: float = 1e-4, freeze_epoch: int = 200,
              reset_optimizer_every_epoch: bool = False, ratio: float = 0.7,
              by_row: bool = True, rounds: int = 3, mask: MaskLike = None) -> Method:
    """ProxQuant as a `Method` (latent = theta, forward = theta, project = Q(theta)).

    prox mode: tx = optimizer, then on the quantized leaves
        theta <- clip(prox_kind(theta + u, lr_t * reg_rate * epoch), -1, 1),
    then from `freeze_epoch` the quantized leaves are hard-set to Q(theta) and frozen.
    lazy mode: the straight-through gradient method with the same Q (`lazy_projection`:
    forward Q(theta), identity STE, step on theta, clip to [-1, 1]), with the same freeze;
    binary: BinaryConnect (`binary_connect(variant='proxquant')`); multibit: Xu et al.'s
    alternating quantization trained with the STE (the paper's LSTM baseline).
    Q: sign (binary), TWN (ternary), greedy + alternating multi-bit (multibit, `bits`).
    `learning_rate` must be the schedule inside `optimizer` (s_t uses lr_t).
    """
    prox, quantize = _operators(kind, bits, ratio, rounds, by_row)
    if projection_mode not in PROJECTION_MODES:
        raise ConfigError(f"unknown ProxQuant projection_mode {projection_mode!r} "
                          f"(config.method.projection_mode). Valid: {', '.join(PROJECTION_MODES)}.")
    mask_fn = as_mask_fn(mask)
    if reset_optimizer_every_epoch:
        optimizer = reset_state_every(optimizer, steps_per_epoch)
    freeze = ([optax.masked(freeze_quantized(quantize, int(freeze_epoch) * steps_per_epoch), mask_fn)]
              if int(freeze_epoch) > 0 else [])
    if projection_mode == "lazy":
        lazy = lazy_projection(optimizer, quantize, mask=mask)
        return lazy._replace(tx=optax.chain(lazy.tx, *freeze))
    strength = homotopy_strength(learning_rate, reg_rate, steps_per_epoch)
    eager = optax.chain(prox_quant(prox, strength), clip_latents(-1.0, 1.0))
    return Method(
        init=checks.float_params(lambda params: params),
        forward=lambda latent, step: latent,
        project=lambda latent: masked_map(quantize, mask_fn(latent), latent),
        tx=optax.chain(optimizer, optax.masked(eager, mask_fn), *freeze))


def from_config(name: str, ctx: Context) -> Method:
    """Build `proxquant` from the `config.method` keys listed in `DEFAULTS`.

    `epoch_steps` > 0 replaces the training split's epoch as the unit of the homotopy
    lambda_t = reg_rate * floor(t / epoch_steps), of `freeze_epoch` and of the optimizer
    reset: a budget shorter than one pass over the data (a language model on random
    windows) has no epochs, and with the data's epoch lambda_t would stay 0."""
    kw = method_options("proxquant", name, ctx, DEFAULTS)
    epoch_steps = kw.pop("epoch_steps")
    if isinstance(epoch_steps, bool) or not isinstance(epoch_steps, int) or epoch_steps < 0:
        raise ConfigError(f"config.method.epoch_steps must be an integer >= 0 (0 = the training "
                          f"split's epoch); got {epoch_steps!r}.")
    return proxquant(ctx.optimizer, ctx.learning_rate, epoch_steps or ctx.steps_per_epoch,
                     mask=ctx.mask, **kw)
