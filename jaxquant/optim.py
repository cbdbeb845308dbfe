"""Base optimizer and learning-rate schedule built from `config.optimizer` / `config.schedule`."""
from __future__ import annotations

import optax

from jaxquant.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "piecewise", "cosine")


def _to_steps(value, unit: str, steps_per_epoch: int) -> int:
    if unit == "step":
        return int(value)
    if unit == "epoch":
        return int(round(value * steps_per_epoch))
    raise ConfigError(f"config.schedule.unit must be 'step' or 'epoch', got {unit!r}.")


def make_schedule(cfg, base_lr: float, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """lr_t from `config.schedule`.

    constant: lr; piecewise: lr · factor^(#boundaries passed) — `boundaries`
    listed, or one every `every` units; cosine: lr · ½(1 + cos(π t / T)).
    An optional linear warm-up of `warmup` units precedes any of them.
    """
    kind = cfg.kind
    if kind == "constant":
        sched = optax.constant_schedule(base_lr)
    elif kind == "piecewise":
        if cfg.every:
            every = _to_steps(cfg.every, cfg.unit, steps_per_epoch)
            bounds = range(every, total_steps + every, every)
        else:
            bounds = [_to_steps(b, cfg.unit, steps_per_epoch) for b in cfg.boundaries]
        sched = optax.piecewise_constant_schedule(
            base_lr, {int(b): float(cfg.factor) for b in bounds if b > 0})
    elif kind == "cosine":
        sched = optax.cosine_decay_schedule(base_lr, max(total_steps, 1))
    else:
        raise ConfigError(f"unknown config.schedule.kind {kind!r}; valid: {', '.join(SCHEDULES)}.")
    warmup = _to_steps(cfg.warmup, cfg.unit, steps_per_epoch) if cfg.warmup else 0
    if warmup:
        sched = optax.join_schedules(
            [optax.linear_schedule(0.0, base_lr, warmup), sched], [warmup])
    return sched


def make_optimizer(cfg, learning_rate: optax.Schedule) -> optax.GradientTransformation:
    """The base optimizer: sgd | momentum (heavy-ball / Nesterov) | adam | adamw.

    `weight_decay` is coupled L2 (added to the gradient, as PyTorch's SGD and
    Adam do) except for adamw, where it is decoupled.
    """
    name, wd = cfg.name, float(cfg.weight_decay)
    if name == "sgd":
        opt = optax.sgd(learning_rate)
    elif name == "momentum":
        opt = optax.sgd(learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif name == "adam":
        opt = optax.adam(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif name == "adamw":
        return optax.adamw(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd)
    else:
        raise ConfigError(
            f"unknown optimizer {name!r} (config.optimizer.name). Valid: {', '.join(OPTIMIZERS)}.")
    return optax.chain(optax.add_decayed_weights(wd), opt) if wd else opt
