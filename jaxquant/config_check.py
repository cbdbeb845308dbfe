"""Config validation before any compute: names, types, ranges, unknown keys.

Every problem is reported as a `ConfigError` naming the field, the bad value,
the valid choices (with a did-you-mean for misspelt keys) and the fix.
"""
from __future__ import annotations

import difflib
import importlib
import math

from jaxquant.config import base_config
from jaxquant.errors import ConfigError

# Sections whose keys are fixed by base_config(); `model` and `method` also take
# per-model / per-method keys, so only their names are checked here.
_FIXED_SECTIONS = ("dataset", "quant", "optimizer", "schedule", "train")
_BIT_FIELDS = ("bits", "weight_bits", "act_bits")


def _did_you_mean(key, choices) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_keys(config) -> None:
    base = base_config()
    for key in config.keys():
        if key not in base and key not in ("ldnq",):
            raise ConfigError(
                f"unknown config section {key!r}.{_did_you_mean(key, base.keys())} "
                f"Valid sections: {', '.join(sorted(base.keys()))}.")
    for section in _FIXED_SECTIONS:
        for key in config[section].keys():
            if key not in base[section]:
                raise ConfigError(
                    f"unknown config key config.{section}.{key}."
                    f"{_did_you_mean(key, base[section].keys())} "
                    f"Valid keys: {', '.join(sorted(base[section].keys()))}.")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value, name, allow_zero=False, integer=False) -> None:
    ok = _is_number(value) and (value >= 0 if allow_zero else value > 0) and (
        not integer or isinstance(value, int))
    if not ok:
        kind = "integer" if integer else "number"
        need = f"an {kind} >= 0" if allow_zero and integer else (
            f"a {kind} >= 0" if allow_zero else f"a positive {kind}")
        raise ConfigError(f"{name} must be {need}, got {value!r}.")


def _unit_interval(value, name) -> None:
    if not (_is_number(value) and 0 <= value < 1):
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")


def _same_kind(value, default) -> bool:
    """Whether `value` may replace `default` (int for float; tuple for list)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def check_free_keys(section, name, allowed: dict, owner: str) -> None:
    """Reject keys of config.<name> that `owner` does not read, and values of the wrong type."""
    for key in section.keys():
        if key == "name":
            continue
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none besides 'name'"
            raise ConfigError(
                f"unknown key config.{name}.{key} for {owner}.{_did_you_mean(key, allowed)} "
                f"Valid keys: {valid}. (A key set by a config file for another {name} cannot be "
                f"removed by an override: start from a config file of {owner} instead.)")
        if not _same_kind(section[key], allowed[key]):
            raise ConfigError(
                f"config.{name}.{key} must be of the type of its default {allowed[key]!r} "
                f"({type(allowed[key]).__name__}), got {section[key]!r}.")


def _method_defaults(name: str):
    """`DEFAULTS[name]` of the method's family module, or None if it declares none
    (then only the name and the common keys are checked)."""
    from jaxquant import methods
    module_name = f"jaxquant.methods.{methods._FAMILIES[name]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ConfigError(f"method {name!r} (config.method.name) is not available in this "
                              f"version of jaxquant: its module {module_name} is missing.") from None
        raise
    return getattr(module, "DEFAULTS", {}).get(name)


def _check_bits(section, name) -> None:
    for key in _BIT_FIELDS:
        if key in section:
            v = section[key]
            lo = 0 if key == "act_bits" else 1
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 8:
                off = "0 (off) or " if lo == 0 else ""
                raise ConfigError(f"config.{name}.{key} must be {off}an integer in 1..8, got {v!r}.")


def _check_name(value, valid, field) -> None:
    if value not in valid:
        raise ConfigError(
            f"unknown {field} {value!r}.{_did_you_mean(value, valid)} "
            f"Valid choices: {', '.join(sorted(valid))}.")


def validate(config) -> None:
    """Raise `ConfigError` for the first problem found in `config`."""
    from jaxquant import data, methods, models
    from jaxquant.optim import OPTIMIZERS, SCHEDULES

    _check_keys(config)
    name = config.dataset.name
    if ":" not in name:
        _check_name(name, data.names(), "config.dataset.name")
    _check_name(config.model.name, models.names(), "config.model.name")
    _check_name(config.method.name, methods.names(), "config.method.name")
    _check_name(config.optimizer.name, OPTIMIZERS, "config.optimizer.name")
    _check_name(config.schedule.kind, SCHEDULES, "config.schedule.kind")
    _check_name(config.schedule.unit, ("step", "epoch"), "config.schedule.unit")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ConfigError(f"config.seed must be an integer, got {config.seed!r}.")
    opt, sched, train = config.optimizer, config.schedule, config.train
    _positive(opt.lr, "config.optimizer.lr")
    _positive(opt.weight_decay, "config.optimizer.weight_decay", allow_zero=True)
    _positive(opt.eps, "config.optimizer.eps")
    for key in ("momentum", "b1", "b2"):
        _unit_interval(opt[key], f"config.optimizer.{key}")
    _positive(sched.factor, "config.schedule.factor")
    _positive(sched.warmup, "config.schedule.warmup", allow_zero=True)
    _positive(sched.every, "config.schedule.every", allow_zero=True)
    if isinstance(sched.boundaries, str) or not all(_is_number(b) and b >= 0 for b in sched.boundaries):
        raise ConfigError(f"config.schedule.boundaries must be a tuple of numbers >= 0, "
                          f"got {sched.boundaries!r}.")
    _positive(train.batch_size, "config.train.batch_size", integer=True)
    _positive(train.eval_batch_size, "config.train.eval_batch_size", integer=True)
    _positive(train.keep_checkpoints, "config.train.keep_checkpoints", integer=True)
    for key in ("epochs", "steps", "eval_every_steps", "log_every_steps", "checkpoint_every_steps"):
        _positive(train[key], f"config.train.{key}", allow_zero=True, integer=True)
    if not (train.steps or train.epochs):
        raise ConfigError("set config.train.steps or config.train.epochs to a positive number.")
    _check_name(train.on_nonfinite, ("stop", "skip"), "config.train.on_nonfinite")
    _positive(config.dataset.validation, "config.dataset.validation", allow_zero=True)
    from jaxquant import parallel
    parallel.check_batch(train.batch_size, parallel.make_mesh())
    for key in ("beta", "beta_max", "bts", "eps_out", "eps_layer", "meta_lr", "reg_rate"):
        if key in config.method:
            _positive(config.method[key], f"config.method.{key}", allow_zero=key == "reg_rate")
    defaults = _method_defaults(config.method.name)
    if defaults is not None:
        check_free_keys(config.method, "method", defaults, f"method {config.method.name!r}")
    model_keys = models.keys(config.model.name)
    if model_keys is not None:
        check_free_keys(config.model, "model", model_keys, f"model {config.model.name!r}")
    _check_bits(config.method, "method")
    _check_bits(config.model, "model")
    fpl = config.quant.full_precision_layers
    if not isinstance(fpl, str):
        raise ConfigError(f"config.quant.full_precision_layers must be a string: comma-separated "
                          f"layer names or 'top:<k>:<path>'; got {fpl!r}.")
    for kind in ("include", "exclude"):
        rules = config.quant[kind]
        if isinstance(rules, str) or not all(isinstance(r, str) for r in rules):
            raise ConfigError(f"config.quant.{kind} must be a list of regex strings, got {rules!r}.")
