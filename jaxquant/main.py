"""Command-line trainer: `python -m jaxquant.main --config configs/x.py --workdir runs/x`.

Any config field can be overridden with `--config.section.key=value`. User
mistakes (unknown names, missing data, bad overrides) end with a one-paragraph
message and exit code 2, without a traceback.
"""
from __future__ import annotations

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
    from jaxquant import train  # heavy imports after flag parsing
    try:
        result = train.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
    except UserError as e:
        fail(str(e))
    if result.get("preempted"):
        sys.exit(0)
    print(f"test accuracy: {100 * result['test_accuracy']:.2f}% "
          f"(hard-quantized network, step {result['step']}, workdir {_WORKDIR.value})")


def run() -> None:
    try:
        app.run(main)
    except flags.Error as e:  # bad --config.x=y overrides surface here
        fail(f"{e}. Check the override's section/key against the config file and its value type.")


if __name__ == "__main__":
    run()
