"""Key and choice checks shared by the methods and the config validation.

A leaf module (it imports nothing of jaxquant but `errors`), so that
`jaxquant.methods` can refuse a misspelt `config.method` key without importing
the model / data registries that `jaxquant.config_check` needs.
"""
from __future__ import annotations

import difflib
from typing import Iterable

from jaxquant.errors import ConfigError


def did_you_mean(key, choices: Iterable) -> str:
    """' Did you mean 'x'?' for the closest of `choices` to `key`, or ''."""
    close = difflib.get_close_matches(str(key), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(value, valid: Iterable, field: str) -> None:
    """Raise `ConfigError` naming `field` if `value` is not one of `valid`."""
    valid = list(valid)
    if value not in valid:
        raise ConfigError(
            f"unknown {field} {value!r}.{did_you_mean(value, valid)} "
            f"Valid choices: {', '.join(sorted(map(str, valid)))}.")


def same_kind(value, default) -> bool:
    """Whether `value` may replace `default` (int for float; tuple for list; anything for None)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def check_free_keys(section, name: str, allowed: dict, owner: str) -> None:
    """Reject keys of config.<name> that `owner` does not read, and values of the wrong type.

    section: the `config.method` / `config.model` ConfigDict (or dict); its `name` key
    is not checked here. allowed: key -> default of what `owner` (e.g. "method
    'md_tanh_s'") reads.
    """
    for key in section.keys():
        if key == "name":
            continue
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none besides 'name'"
            raise ConfigError(
                f"unknown key config.{name}.{key} for {owner}.{did_you_mean(key, allowed)} "
                f"Valid keys of {owner}: {valid}.")
        if not same_kind(section[key], allowed[key]):
            raise ConfigError(
                f"config.{name}.{key} must be of the type of its default {allowed[key]!r} "
                f"({type(allowed[key]).__name__}), got {section[key]!r}.")
