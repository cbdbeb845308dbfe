"""Config validation before any compute: names, types, ranges, unknown keys.

Every problem is reported as a `ConfigError` naming the field, the bad value,
the valid choices (with a did-you-mean for misspelt keys) and the fix.
"""
from __future__ import annotations

import importlib
import math

from jaxquant.config import base_config
from jaxquant.config_keys import check_choice, check_free_keys, did_you_mean
from jaxquant.errors import ConfigError

# Sections whose keys are fixed by base_config(); `model` and `method` also take
# per-model / per-method keys, so only their names are checked here.
_FIXED_SECTIONS = ("dataset", "quant", "optimizer", "schedule", "train")
_BIT_FIELDS = ("bits", "weight_bits", "act_bits")


def _check_keys(config) -> None:
    base = base_config()
    for key in config.keys():
        if key not in base and key not in ("ldnq",):
            raise ConfigError(
                f"unknown config section {key!r}.{did_you_mean(key, base.keys())} "
                f"Valid sections: {', '.join(sorted(base.keys()))}.")
    for section in _FIXED_SECTIONS:
        for key in config[section].keys():
            if key not in base[section]:
                raise ConfigError(
                    f"unknown config key config.{section}.{key}."
                    f"{did_you_mean(key, base[section].keys())} "
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


def section_keys(section: str, name) -> dict | None:
    """key -> default of every `config.<section>` key ('method' or 'model') that method or
    model `name` reads, `name` excluded; None for an unknown name (or a method that
    declares no `DEFAULTS`, such as the post-training `ldnq`)."""
    from jaxquant import methods, models
    if section == "model":
        return models.keys(name) if isinstance(name, str) else None
    if not isinstance(name, str) or name not in methods.names():
        return None
    return _method_defaults(name)


def readers_of(section: str, key: str) -> list[str]:
    """The methods (section 'method') or models ('model') that read `config.<section>.<key>`."""
    from jaxquant import methods, models
    names = methods.names() if section == "method" else models.names()
    out = []
    for name in names:
        try:
            keys = section_keys(section, name)
        except ConfigError:  # a family module missing from this checkout
            continue
        if keys and key in keys:
            out.append(name)
    return out


def complete_sections(config, names: dict | None = None) -> None:
    """Give `config.method` and `config.model` every key their method and model read.

    names: {'method': ..., 'model': ...}, names that replace the file's (what
    `--config.method.name=` / `--config.model.name=` say on the command line).
    Keys the section already sets keep their values and the others get their
    defaults, so that every key can be overridden and `config.json` records
    them all. When a name changes, the keys the file set for its own method (or
    model) that the new one does not read are dropped; keys both read keep the
    file's value. An unknown name leaves its section as it is, for `validate` to
    report. A key whose value is None becomes a field of any type, so that an
    override can give it a number, a bool or a string. `config` must be unlocked.
    """
    import ml_collections
    names = names or {}
    for section in ("method", "model"):
        node = config[section]
        name = names.get(section, node.get("name"))
        keys = section_keys(section, name)
        if keys is None:
            continue
        if name != node.get("name"):
            for key in [k for k in node.keys() if k != "name" and k not in keys]:
                del node[key]
            node.name = name
        for key, default in keys.items():
            value = node.get(key, default)
            if value is None:
                if key in node:
                    del node[key]
                node[key] = ml_collections.FieldReference(None, field_type=object)
            elif key not in node:
                node[key] = default


def _check_bits(section, name) -> None:
    for key in _BIT_FIELDS:
        if key in section:
            v = section[key]
            lo = 0 if key == "act_bits" else 1
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 8:
                off = "0 (off) or " if lo == 0 else ""
                raise ConfigError(f"config.{name}.{key} must be {off}an integer in 1..8, got {v!r}.")


def validate(config) -> None:
    """Raise `ConfigError` for the first problem found in `config`."""
    from jaxquant import data, methods, models
    from jaxquant.optim import OPTIMIZERS, SCHEDULES

    _check_keys(config)
    name = config.dataset.name
    if ":" not in name:
        check_choice(name, data.names(), "config.dataset.name")
    check_choice(config.model.name, models.names(), "config.model.name")
    check_choice(config.method.name, methods.names(), "config.method.name")
    check_choice(config.optimizer.name, OPTIMIZERS, "config.optimizer.name")
    check_choice(config.schedule.kind, SCHEDULES, "config.schedule.kind")
    check_choice(config.schedule.unit, ("step", "epoch"), "config.schedule.unit")
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
    check_choice(train.on_nonfinite, ("stop", "skip"), "config.train.on_nonfinite")
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
