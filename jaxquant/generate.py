"""Sample bytes from a trained byte-level language model (`python -m jaxquant.generate`).

    python -m jaxquant.generate --workdir runs/lm --prompt "The meaning of life" \
        [--bytes 200 --temperature 0.8 --seed 0]
    python -m jaxquant.generate --export runs/lm/export --prompt "..."

Reads the run's config and its latest checkpoint (the hard-quantized weights the trainer
saved, `method.project(latent)`), or an export written by `jaxquant.export`, rebuilds the
model, and extends the prompt's UTF-8 bytes one byte at a time: the next byte is drawn
from softmax(logits / T) at the last position (T = --temperature; T = 0 takes the
argmax), the context being the last config.model.seq_len bytes. The output is the prompt
plus the new bytes, decoded as UTF-8 (invalid sequences shown as U+FFFD).

A missing checkpoint, a run of a model that is not a language model, or a bad flag value
is a user error (exit status 2, one message naming the fix).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxquant.errors import UserError

LM_MODELS = ("transformer",)


class GenerateError(UserError):
    """A run or export that holds no language model, or a bad sampling option."""


def _config_of(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise GenerateError(f"cannot read the run config {path} ({e}); --workdir must be the "
                            f"workdir of a trainer run of a language model.") from None


def load_lm(workdir: str | None = None, export: str | None = None) -> tuple[Any, Any, int]:
    """(model, params, vocab) of a run's latest checkpoint or of an export."""
    from jaxquant import checkpoints, export as export_lib, models

    if bool(workdir) == bool(export):
        raise GenerateError("pass exactly one of --workdir (a trainer run) or --export (an "
                            "export directory).")
    if export:
        params, _, manifest = export_lib.load(export)
        config, where = manifest["config"], export
    else:
        config, where = _config_of(workdir), workdir
    model_cfg = config.get("model") if isinstance(config, dict) else None
    name = model_cfg.get("name") if isinstance(model_cfg, dict) else None
    if name not in LM_MODELS:
        raise GenerateError(f"{where} holds a run of model {name!r}, not a language model "
                            f"(config.model.name one of {', '.join(LM_MODELS)}); generate "
                            f"samples only from a byte-level LM run, e.g. "
                            f"configs/lm_fortunes_bitnet.py.")
    if not export:
        if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
            raise GenerateError(f"no checkpoint in {workdir} ({checkpoints.CHECKPOINT_DIR}/ is "
                                f"missing): train the run first, or pass --export=<export dir>.")
        params, _, _ = checkpoints.load_weights(workdir)
    vocab = 256
    model = models.build(ml_collections.ConfigDict(model_cfg), vocab)
    return model, jax.tree.map(jnp.asarray, params), vocab


def sample(model, params, prompt: bytes, n_bytes: int, temperature: float = 1.0,
           seed: int = 0) -> bytes:
    """`prompt` followed by `n_bytes` bytes drawn one at a time from the model.

    Byte t + 1 ~ softmax(logits_t / temperature) of the model run on the last
    `model.seq_len` bytes (argmax at temperature 0); keyed by fold_in(PRNGKey(seed), t).
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 0:
        raise GenerateError(f"--bytes must be an integer >= 0, got {n_bytes!r}.")
    if not temperature >= 0:
        raise GenerateError(f"--temperature must be >= 0 (0 = greedy), got {temperature!r}.")
    if not prompt:
        raise GenerateError("--prompt is empty; give at least one byte of context.")
    window = int(model.seq_len)
    out = list(prompt)
    key = jax.random.PRNGKey(seed)
    for t in range(n_bytes):
        context = out[-window:]
        # a fixed-length buffer (one compilation); positions after `length` cannot
        # influence position length - 1 (causal mask)
        tokens = np.zeros(window, np.int32)
        tokens[:len(context)] = context
        out.append(int(_next_byte(model, params, jnp.asarray(tokens), len(context),
                                  jax.random.fold_in(key, t), jnp.float32(temperature))))
    return bytes(out)


@functools.partial(jax.jit, static_argnums=0)
def _next_byte(model, params, tokens, length, key, temperature):
    """The byte after tokens[:length]: argmax of the logits at temperature 0, else a draw
    from softmax(logits / temperature). Compiled once per model (params are arguments)."""
    logits = model.apply({"params": params}, tokens[None])[0, length - 1]
    drawn = jax.random.categorical(key, logits / jnp.maximum(temperature, 1e-6))
    return jnp.where(temperature > 0, drawn, jnp.argmax(logits))


def main(argv):
    from absl import flags
    from jaxquant.checkpoints import quiet_orbax_logs
    from jaxquant.export import fail
    del argv
    quiet_orbax_logs()
    FLAGS = flags.FLAGS
    try:
        model, params, _ = load_lm(FLAGS.workdir or None, FLAGS.export or None)
        text = sample(model, params, FLAGS.prompt.encode("utf-8"), FLAGS.bytes,
                      FLAGS.temperature, FLAGS.seed)
    except UserError as e:
        fail(str(e))
    print(text.decode("utf-8", errors="replace"))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", "", "Workdir of a trainer run of a language model.")
    flags.DEFINE_string("export", "", "Or: an export directory (`python -m jaxquant.export`).")
    flags.DEFINE_string("prompt", "\n", "Text to continue (its UTF-8 bytes).")
    flags.DEFINE_integer("bytes", 200, "Number of bytes to generate.")
    flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 = greedy (argmax).")
    flags.DEFINE_integer("seed", 0, "Random seed of the sampling.")
    app.run(main)
