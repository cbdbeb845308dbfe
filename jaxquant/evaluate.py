"""Evaluate an export: `python -m jaxquant.evaluate --export runs/x/export`.

Loads the bit-packed weights written by `jaxquant.export`, rebuilds the model and
dataset from the config stored in the manifest, and runs the trainer's own
evaluation on the test split, so the accuracy and the mean loss (for a byte-level
language model: bits per byte = loss / ln 2) equal the in-training ones of the
hard-quantized network at that step exactly.

Exit status: 0 when the accuracy (and loss) match those recorded at export (or none was
recorded), 1 when one DIFFERS FROM it, 2 for an unreadable, corrupted or edited
export (a user error, with a message naming the file and field).
"""
from __future__ import annotations

import sys

import jax
import ml_collections

from jaxquant import checkpoints, export as export_lib
from jaxquant.data import text as text_data
from jaxquant.errors import UserError


def evaluate_export(directory: str, split: str = "test") -> dict:
    """{'accuracy', 'loss', 'step', 'text', 'training_test_accuracy' / 'training_test_loss' (if
    recorded)} of an export; `loss` is the mean per prediction (per byte for text, 'text' True)."""
    from jaxquant import train

    params, batch_stats, manifest = export_lib.load(directory)
    config = _run_config(manifest, directory)
    config.init_checkpoint = ""  # the weights come from the export, not a warm start
    exp = train.build_experiment(config)
    want = jax.tree.map(lambda x: (x.shape, x.dtype), (exp.params, exp.batch_stats))
    got = jax.tree.map(lambda x: (x.shape, x.dtype), (params, batch_stats))
    if want != got:
        raise export_lib.ExportError(
            f"{directory}/{export_lib.MANIFEST}: the tensors do not match the model of its config "
            f"({config.model.name}); the export is corrupted or was edited.")
    data = getattr(exp.dataset, split, None)
    if data is None:
        raise UserError(f"the dataset {config.dataset.name!r} has no {split!r} split.")
    out = train.evaluate(exp, train.make_eval_fn(exp), params, batch_stats, data)
    out["step"] = manifest["info"].get("step")
    for key in ("training_test_accuracy", "training_test_loss"):
        if key in manifest["info"]:
            out[key] = manifest["info"][key]
    out["text"] = text_data.is_text(config.dataset.name)
    return out


def _run_config(manifest: dict, directory: str) -> ml_collections.ConfigDict:
    """The run config stored in a manifest, with every section of a trainer config an
    object (ExportError naming the field otherwise); `validate` checks the values."""
    from jaxquant.config import base_config

    path = f"{directory}/{export_lib.MANIFEST}"
    if not manifest["config"]:
        raise export_lib.ExportError(f"{path} holds no run config; only exports of trainer runs "
                                     f"can be evaluated here.")
    for section, default in base_config().items():
        value = manifest["config"].get(section)
        if isinstance(default, ml_collections.ConfigDict) and not isinstance(value, dict):
            what = "is missing" if section not in manifest["config"] else f"is {value!r}"
            raise export_lib.ExportError(
                f"{path}: field 'config.{section}' {what}; it must be an object (the run's "
                f"config.{section}). Export the run again.")
    return ml_collections.ConfigDict(manifest["config"])


def main(argv):
    from absl import flags
    del argv
    checkpoints.quiet_orbax_logs()
    fail = export_lib.fail
    FLAGS = flags.FLAGS
    try:
        out = evaluate_export(FLAGS.export, FLAGS.split)
    except UserError as e:
        fail(str(e))
    bpb = f", {text_data.bits_per_byte(out['loss']):.4f} bits per byte" if out["text"] else ""
    line = (f"{FLAGS.split} accuracy: {100 * out['accuracy']:.2f}% (loss {out['loss']:.4f}{bpb}) "
            f"of the export at {FLAGS.export}, step {out['step']}")
    test = FLAGS.split == "test"
    checks = [(what, out[key], out.get(f"training_test_{key}") if test else None)
              for what, key in (("accuracy", "accuracy"), ("loss", "loss"))]
    differ = [(what, got, want) for what, got, want in checks if want is not None and got != want]
    recorded = out.get("training_test_accuracy") if test else None
    if recorded is not None:
        same = "DIFFERS FROM" if differ else "matches"
        line += f"; {same} the in-training {100 * recorded:.2f}%"
        if out.get("training_test_loss") is not None:
            line += f" (loss {out['training_test_loss']:.4f})"
    print(line)
    for what, got, want in differ:
        print(f"error: the export's test {what} {got!r} differs from the {want!r} recorded when "
              f"it was exported.", file=sys.stderr)
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("export", None, "Export directory written by `python -m jaxquant.export`.")
    flags.DEFINE_string("split", "test", "Split to evaluate: test | validation.")
    flags.mark_flag_as_required("export")
    app.run(main)
