"""The `Method` interface every quantization method implements (DESIGN.md).

A method is four pure functions over a pytree of *latent* variables (what the
optimizer trains), plus optional hooks. Nothing here knows a model, a dataset
or the trainer: it works on any params pytree.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from jaxquant.config_keys import check_free_keys
from jaxquant.methods import checks

Params = Any
Latent = Any
Array = jax.Array
# Which leaves a method quantizes: None (all), params -> bool pytree, or a bool pytree.
MaskLike = Union[None, Callable[[Params], Params], Params]


class Method(NamedTuple):
    """A quantization method.

    init:    full-precision params -> latent.
    forward: (latent, step) -> weights of the training forward pass (may hold a
             custom_vjp: STE, tanh/softmax maps, meta-gradients, ...).
    project: latent -> hard-quantized weights (evaluation, export).
    tx:      the latent update; already chained with the base optimizer.
    loss:    optional; replaces the trainer's cross-entropy (see `LossFn`).
    final_state: optional; latent -> JSON-able dict of method state (e.g. PD-QAT's
             dual variables) that the trainer writes to `<workdir>/method_state.json`
             at the end of a run.
    """
    init: Callable[[Params], Latent]
    forward: Callable[[Latent, Array], Params]
    project: Callable[[Latent], Params]
    tx: optax.GradientTransformation
    loss: Optional["LossFn"] = None
    final_state: Optional[Callable[[Latent], dict]] = None


# loss(method, apply_fn, latent, batch_stats, images, labels, step)
#   -> (scalar loss, LossAux)
# apply_fn is the Flax module's `apply`; a loss must call it with
# mutable=["batch_stats"] when train=True and return the updated stats.
LossFn = Callable[..., Any]


class LossAux(NamedTuple):
    logits: Array
    batch_stats: Any
    metrics: dict = {}


class Context(NamedTuple):
    """What the trainer hands a method factory (`methods.build`).

    config:          the whole experiment config; a method reads `config.method.*`.
    optimizer:       the base optimizer built from `config.optimizer` and the
                     learning-rate schedule (the user's choice, e.g. Adam).
    learning_rate:   the schedule, step -> lr (ProxQuant needs lr_t).
    mask:            params -> pytree of bools, True where a leaf is quantized
                     (from `config.quant` regex rules).
    steps_per_epoch: optimizer steps per epoch of the training split.
    """
    config: Any
    optimizer: optax.GradientTransformation
    learning_rate: Callable[[Array], Array]
    mask: Callable[[Params], Params]
    steps_per_epoch: int


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def default_loss(method: Method, apply_fn, latent, batch_stats, images, labels, step):
    """Cross-entropy of the network run with `method.forward(latent, step)`."""
    params = method.forward(latent, step)
    logits, mutated = apply_fn({"params": params, "batch_stats": batch_stats}, images,
                               train=True, mutable=["batch_stats"])
    return cross_entropy(logits, labels), LossAux(logits, mutated.get("batch_stats", {}))


def as_mask_fn(mask: MaskLike) -> Callable[[Params], Params]:
    """A params -> bool-pytree function from None (all leaves), a function, or a bool pytree.

    The mask it returns is checked against the params it is applied to: the same
    structure (ValueError naming `mask` and the paths that differ) and Python bool
    leaves (TypeError: an array or a string such as "no" is not a mask leaf).
    """
    if mask is None:
        return lambda p: jax.tree.map(lambda _: True, p)
    if callable(mask):
        return lambda p: checks.mask_for(mask(p), p)
    checks.mask_leaves(mask)  # now, not at the first step
    return lambda p: checks.mask_for(mask, p)


def masked_map(fn: Callable[[Array], Array], mask: Params, tree: Params) -> Params:
    """Apply `fn` to the leaves of `tree` where `mask` is True; keep the others."""
    return jax.tree.map(lambda m, x: fn(x) if m else x, mask, tree)


def split_by_mask(mask_fn: Callable[[Params], Params], quantized: optax.GradientTransformation,
                  full_precision: optax.GradientTransformation) -> optax.GradientTransformation:
    """`quantized` on masked leaves, `full_precision` on the rest (optax.partition)."""
    def labels(params):
        return jax.tree.map(lambda m: "q" if m else "fp", mask_fn(params))
    return optax.partition({"q": quantized, "fp": full_precision}, labels)


def identity_method(optimizer: optax.GradientTransformation) -> Method:
    """Full precision: latent = params, forward = project = identity."""
    ident = lambda p: p  # noqa: E731
    return Method(init=checks.float_params(ident), forward=lambda latent, step: latent,
                  project=ident, tx=optimizer)


class ScheduledStepState(NamedTuple):
    """State of `scheduled_step`: the number of steps taken (the t of s_t)."""
    count: jax.Array


def scheduled_step(name: str, step_fn: Callable[[Array, Array, Array], Array],
                   schedule: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """A latent update that replaces the chain's step: theta_{t+1} = step_fn(theta_t, u_t, s_t).

    u_t is the update proposed by the preceding transformations, s_t = schedule(t)
    (or a constant); the returned update is theta_{t+1} - theta_t. Mirror steps
    (x <- tanh(atanh(x) + beta_t u)) and proximal steps (theta <- prox(theta + u, s_t))
    are both of this form. Needs `params` in `update`.
    """
    def init(params):
        del params
        return ScheduledStepState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(f"{name} needs the params: call tx.update(updates, state, params).")
        s = jnp.asarray(schedule(state.count) if callable(schedule) else schedule, jnp.float32)
        new = jax.tree.map(lambda p, u: step_fn(p, u, s) - p, params, updates)
        return new, ScheduledStepState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def method_options(family: str, name: str, ctx: Context, defaults: dict) -> dict:
    """`config.method`'s values for the keys of `defaults[name]` (their defaults where unset).

    A key `name` does not read, or a value of another type than its default, is a
    ConfigError naming it (the check `jaxquant.config_check` runs on a whole config).
    """
    if name not in defaults:
        raise ValueError(f"jaxquant.methods.{family} has no method {name!r}.")
    m = ctx.config.method
    if hasattr(m, "keys"):
        check_free_keys(m, "method", defaults[name], f"method {name!r}")
    get = m.get if hasattr(m, "get") else (lambda k, d=None: getattr(m, k, d))
    return {k: get(k, d) for k, d in defaults[name].items()}


def num_steps_to_epoch(step: Array, steps_per_epoch: int) -> Array:
    """0-based epoch of an optimizer step."""
    return jnp.asarray(step) // max(int(steps_per_epoch), 1)
