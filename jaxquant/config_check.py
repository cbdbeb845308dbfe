"""Config validation before any compute: names, types, ranges, unknown keys.

Every problem is reported as a `ConfigError` naming the field, the bad value,
the valid choices (with a did-you-mean for misspelt keys) and the fix.
"""
from __future__ import annotations

import difflib

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


def _positive(value, name, allow_zero=False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        need = "a number >= 0" if allow_zero else "a positive number"
        raise ConfigError(f"{name} must be {need}, got {value!r}.")


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
    _positive(config.optimizer.lr, "config.optimizer.lr")
    _positive(config.optimizer.weight_decay, "config.optimizer.weight_decay", allow_zero=True)
    _positive(config.train.batch_size, "config.train.batch_size")
    if not isinstance(config.train.batch_size, int):
        raise ConfigError(f"config.train.batch_size must be an integer, got {config.train.batch_size!r}.")
    _positive(config.train.epochs, "config.train.epochs", allow_zero=True)
    _positive(config.train.steps, "config.train.steps", allow_zero=True)
    if not (config.train.steps or config.train.epochs):
        raise ConfigError("set config.train.steps or config.train.epochs to a positive number.")
    _positive(config.dataset.validation, "config.dataset.validation", allow_zero=True)
    for key in ("beta", "beta_max", "bts", "eps_out", "eps_layer", "meta_lr", "reg_rate"):
        if key in config.method:
            _positive(config.method[key], f"config.method.{key}", allow_zero=key == "reg_rate")
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
