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

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxquant import cli_config
from jaxquant.errors import UserError

_CONFIG = cli_config.define_config_flag(
    "Experiment config file (configs/*.py); override fields with --config.section.key=value.")
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


def _parse_flags(argv):
    return cli_config.parse_flags(argv, fail)


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
        fail(f"cannot load the config: {cli_config.message(e)}")
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


def run() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
