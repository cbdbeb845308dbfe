"""The `--config` flag of the command-line tools (`jaxquant.main`, `jaxquant.compare`):
loading a config file with its method and model sections completed, and turning a bad
flag or override into a one-paragraph message (`parse_flags`).
"""
from __future__ import annotations

import difflib
import os
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags


class _CompletingParser(flags.ArgumentParser):
    """Loads `--config=<file>[:arg]` (ml_collections' loader), then completes its method and
    model sections.

    The names given by `--config.method.name=` / `--config.model.name=` on the
    command line are applied first; then `config.method` and `config.model` get
    every key that method and model read, with its default where the file does
    not set it (`config_check.complete_sections`). ml_collections then applies the
    overrides to this config, so any such key can be overridden from any config
    file, and config.json records every key.
    """

    def __init__(self, file_parser, argv=None):
        self._file_parser = file_parser  # ml_collections' loader: runs the file's get_config()
        self._argv = argv  # None: sys.argv, which config_flags reads the overrides from

    def parse(self, argument):
        config = self._file_parser.parse(argument)
        if isinstance(config, ml_collections.ConfigDict):  # else an unreadable file, reported later
            from jaxquant.config_check import complete_sections
            argv = self._argv if self._argv is not None else flags.FLAGS.read_flags_from_files(
                sys.argv, force_gnu=False)
            complete_sections(config, _name_overrides(argv))
            config.lock()
        return config

    def with_argv(self, argv) -> "_CompletingParser":
        """The same loader reading the name overrides from `argv` instead of sys.argv."""
        return _CompletingParser(self._file_parser, argv)

    def flag_type(self):
        return self._file_parser.flag_type()


def define_config_flag(help_text: str, name: str = "config"):
    """Define `--<name>=<file>[:arg]` whose value is the file's config, method and model
    sections completed (`_CompletingParser`), unlocked; returns the flag holder."""
    holder = config_flags.DEFINE_config_file(name, None, help_text, lock_config=False)
    flag = flags.FLAGS[holder.name]
    flag.parser = _CompletingParser(flag.parser)
    return holder


def message(e: BaseException) -> str:
    """The innermost message of a (possibly wrapped) exception, on one line."""
    while e.args and isinstance(e.args[0], BaseException):
        e = e.args[0]
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(text).split())


def _name_overrides(argv) -> dict:
    """{'method': name, 'model': name} as `--config.method.name=` / `--config.model.name=`
    in `argv` set them (the last one wins)."""
    names = {}
    for i, a in enumerate(argv):
        for section in ("method", "model"):
            flag = f"--config.{section}.name"
            if a.startswith(flag + "="):
                names[section] = a.split("=", 1)[1]
            elif a == flag and i + 1 < len(argv):
                names[section] = argv[i + 1]
    return names


def _config_spec(argv) -> str | None:
    """The `<file>[:arg]` that `--config=` (or `--config <file>`) names in `argv`, else None."""
    spec = None
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            spec = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    return spec


def _config_file_value(argv):
    """The completed config that `--config=<file>[:arg]` in `argv` names (None if it cannot be
    loaded)."""
    spec = _config_spec(argv)
    if spec is None:
        return None
    try:
        config = flags.FLAGS["config"].parser.with_argv(argv).parse(spec)
    except Exception:  # the flag parser reports a broken config file itself
        return None
    return config if isinstance(config, ml_collections.ConfigDict) else None


def _missing_key_hint(arg, where, key, keys, config) -> str:
    """Why `--config.<section>.<key>` names no field: a misspelling, or a key of another
    method / model than the chosen one."""
    from jaxquant import config_check
    fields = [k for k in keys if k != "name"]
    close = difflib.get_close_matches(key, fields or keys, n=1)
    mean = f" Did you mean {where}.{close[0]}?" if close else ""
    section = where.split(".", 1)[1] if where in ("config.method", "config.model") else None
    if section is None:
        return f"{arg}: {where} has no field {key!r}.{mean} Its fields: {', '.join(sorted(keys))}."
    name = config[section].get("name")
    try:
        readers = [n for n in config_check.readers_of(section, key) if n != name]
    except Exception:  # noqa: BLE001 - only a hint
        readers = []
    other = (f" {key!r} is a key of {section} {', '.join(readers)}: choose one with "
             f"--config.{section}.name=..." if readers else "")
    return (f"{arg}: {section} {name!r} has no key {key!r} ({where} has no field {key!r}).{mean} "
            f"Valid keys of {section} {name!r}: {', '.join(sorted(fields)) or 'none besides name'}."
            f"{other}")


def _override_hint(argv):
    """A message for the first `--config.a.b=v` in `argv` that names no field of the config."""
    config = _config_file_value(argv)
    if config is None:
        return None
    for a in argv:
        if not a.startswith("--config.") or "=" not in a:
            continue
        path = a[len("--config."):].split("=", 1)[0].split(".")
        node, where = config, "config"
        for key in path:
            keys = list(node.keys()) if hasattr(node, "keys") else None
            if keys is None:
                return (f"{a}: {where} is a value, not a section; it has no field {key!r}.")
            if key not in keys:
                return _missing_key_hint(a, where, key, keys, config)
            node, where = node[key], f"{where}.{key}"
    return None


def _config_file_error(e: BaseException, argv) -> str | None:
    """'<file>, line N (in f): Error: message' if `e` was raised by the code of the config
    file that `argv` names (a NameError, a failed import, ...), else None."""
    import traceback
    spec = _config_spec(argv)
    if not spec:
        return None
    path = os.path.abspath(spec.partition(":")[0])
    while True:  # the innermost exception that passed through the config file
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) == path]
        if frames:
            break
        if e.__cause__ is None and e.__context__ is None:
            return None
        e = e.__cause__ or e.__context__
    f = frames[-1]
    return (f"the config file {spec.partition(':')[0]}, line {f.lineno} (in {f.name}), raised "
            f"{type(e).__name__}: {' '.join(str(e).split())}. Fix that line of the config file.")


def parse_flags(argv, fail):
    """absl's flag parsing of `argv`; a user mistake calls `fail(message)` (which exits)."""
    try:
        return flags.FLAGS(argv)
    # unknown flags, a missing or broken config file, --config.x=y naming no field or of a bad type
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError) as e:
        fail(_config_file_error(e, argv) or _override_hint(argv) or
             f"{message(e)}. Check the flag, or the override's section/key and value type against the "
             f"config file (lists are given as tuples: --config.quant.exclude=\"('head/.*',)\").")
    except Exception as e:  # the config file's own code raised (NameError, ImportError, ...)
        text = _config_file_error(e, argv)
        if text is None:
            raise  # a bug, not a user mistake: keep the traceback
        fail(text)
