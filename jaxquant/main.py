"""Command-line trainer: `python -m jaxquant.main --config configs/x.py --workdir runs/x`.

Any config field can be overridden with `--config.section.key=value`. User
mistakes (unknown names, missing data, bad overrides) end with a one-paragraph
message and exit code 2, without a traceback.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxquant.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py); override fields with "
    "--config.section.key=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and exports.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete an existing run in --workdir first "
                                "(without it, a run of the same config is resumed).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0's coordinator "
    "(with --num_processes and --process_id); see launch/slurm.sh.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: start jax.distributed from the cluster environment "
    "(SLURM, TPU pod) without explicit coordinator flags.")
flags.mark_flags_as_required(["config", "workdir"])

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; pass options as --config=... --workdir=... and "
             f"overrides as --config.section.key=value.")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from jaxquant import parallel, train  # heavy imports after flag parsing
    parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                        auto=_DISTRIBUTED.value)
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
    if result.get("preempted"):
        sys.exit(0)
    if not parallel.is_main_process():
        return
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}% "
          f"(hard-quantized network, step {result['step']}, workdir {_WORKDIR.value})")


def _message(e: BaseException) -> str:
    """The innermost message of a (possibly wrapped) exception, on one line."""
    while e.args and isinstance(e.args[0], BaseException):
        e = e.args[0]
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(text).split())


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    # unknown flags, a missing or broken config file, --config.x=y naming no field or of a bad type
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError) as e:
        fail(f"{_message(e)}. Check the flag, or the override's section/key and value type against the "
             f"config file (lists are given as tuples: --config.quant.exclude=\"('head/.*',)\").")


def run() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
