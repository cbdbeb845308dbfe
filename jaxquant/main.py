"""Command-line trainer: `python -m jaxquant.main --config configs/x.py --workdir runs/x`.

Any config field can be overridden with `--config.section.key=value`, and so can
every key of the chosen method and model, set by the file or not (the config's
method and model sections are completed with their defaults first). User
mistakes (unknown names, missing data, bad overrides) end with a one-paragraph
message and exit code 2, without a traceback.

SIGTERM or SIGINT (Ctrl-C) during training finishes the current step, saves a
checkpoint, prints how to resume and exits with 128 + the signal number (143
for SIGTERM, 130 for SIGINT, as a shell reports a job stopped by that signal);
rerunning the same command resumes and ends with the same weights as an
uninterrupted run. A run that ends early through `stop_after_steps` exits 0.

Compiled steps are kept in JAX's persistent compilation cache, so that a resumed
or repeated run of the same config does not compile them again: the directory is
`--compilation_cache=DIR`, else $JAXQUANT_COMPILATION_CACHE, else
$XDG_CACHE_HOME/jaxquant/jax (~/.cache/jaxquant/jax); `off` turns it off.

The workdir rules (what --overwrite may replace, what a resume may change, the
lock against a second run) are `jaxquant.workdir`'s.
"""
from __future__ import annotations

import difflib
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxquant.errors import UserError


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

    def __init__(self, argv=None):
        self._argv = argv  # None: sys.argv, which config_flags reads the overrides from

    def parse(self, argument):
        config = _FILE_PARSER.parse(argument)
        if isinstance(config, ml_collections.ConfigDict):  # else an unreadable file, reported later
            from jaxquant.config_check import complete_sections
            argv = self._argv if self._argv is not None else flags.FLAGS.read_flags_from_files(
                sys.argv, force_gnu=False)
            complete_sections(config, _name_overrides(argv))
            config.lock()
        return config

    def flag_type(self):
        return _FILE_PARSER.flag_type()


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py); override fields with "
    "--config.section.key=value.", lock_config=False)
_FILE_PARSER = flags.FLAGS[_CONFIG.name].parser  # runs the file's get_config()
flags.FLAGS[_CONFIG.name].parser = _CompletingParser()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and exports.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the jaxquant run in --workdir (a folder "
                                "holding anything else is refused); without it, a run of the same "
                                "config is resumed.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0's coordinator "
    "(with --num_processes and --process_id); see launch/slurm.sh.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: start jax.distributed from the cluster environment "
    "(SLURM, TPU pod) without explicit coordinator flags.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", None, "Directory of JAX's persistent compilation cache (default "
    "$JAXQUANT_COMPILATION_CACHE, else ~/.cache/jaxquant/jax); 'off' disables it.")
flags.mark_flags_as_required(["config", "workdir"])

from jaxquant.compile_cache import CACHE_ENV, compilation_cache_dir, enable_compilation_cache  # noqa: E402,F401

EXIT_USER_ERROR = 2
EXIT_SIGNAL_BASE = 128  # preempted by signal N: exit 128 + N, after saving a checkpoint


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; pass options as --config=... --workdir=... and "
             f"overrides as --config.section.key=value.")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from jaxquant import parallel, train  # heavy imports after flag parsing
    enable_compilation_cache(_CACHE.value)
    try:
        parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                            auto=_DISTRIBUTED.value)
    except UserError as e:
        fail(str(e))
    path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
    if not os.path.isfile(path):
        fail(f"config file {path!r} not found; pass --config=configs/<experiment>.py "
             f"(the configs/ folder lists them).")
    try:
        config = _CONFIG.value
    except (OSError, AttributeError, KeyError, TypeError, ValueError, SyntaxError) as e:
        fail(f"cannot load the config: {_message(e)}")
    try:
        from jaxquant import methods
        run_fn = methods.runner(config.method.name) or train.run  # post-training methods have their own
        result = run_fn(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (set-up, final evaluation)
        print(f"interrupted outside the training loop; checkpoints already in {_WORKDIR.value!r} "
              f"are kept — rerun the same command to resume.", file=sys.stderr)
        sys.exit(EXIT_SIGNAL_BASE + 2)
    if result.get("preempted"):
        sys.exit(EXIT_SIGNAL_BASE + result["signal"] if result.get("signal") else 0)
    if not parallel.is_main_process():
        return
    size = _size_line(_WORKDIR.value)
    if size:
        print(size)
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}% "
          f"(hard-quantized network, step {result['step']}, workdir {_WORKDIR.value})")


def _size_line(workdir: str) -> str | None:
    """The totals line of the run's size report (float32 vs quantized bytes, compression),
    i.e. the last line of `<workdir>/summary.txt`; None if there is none."""
    path = os.path.join(workdir, "summary.txt")
    try:
        with open(path) as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return None
    return f"weights: {lines[-1]} (per layer: {path})" if lines else None


def _message(e: BaseException) -> str:
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
        config = _CompletingParser(argv).parse(spec)
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


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    # unknown flags, a missing or broken config file, --config.x=y naming no field or of a bad type
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError) as e:
        fail(_config_file_error(e, argv) or _override_hint(argv) or
             f"{_message(e)}. Check the flag, or the override's section/key and value type against the "
             f"config file (lists are given as tuples: --config.quant.exclude=\"('head/.*',)\").")
    except Exception as e:  # the config file's own code raised (NameError, ImportError, ...)
        message = _config_file_error(e, argv)
        if message is None:
            raise  # a bug, not a user mistake: keep the traceback
        fail(message)


def run() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
