"""Orbax checkpoints of a run: resumable train state plus the hard-quantized weights.

Each saved step holds three items:
- `state`:   the full TrainState (latent, optimizer state, BN stats, step, rng);
- `weights`: {'params': method.project(latent), 'batch_stats': ...} — what
             export, evaluation and warm starts read, without knowing the method;
- `meta`:    JSON (best validation/test accuracy so far, ...).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxquant.errors import UserError

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(UserError):
    """A checkpoint that cannot be found or read."""


def checkpoint_dir(path: str) -> str:
    """The checkpoint directory of a workdir (or `path` itself if it is one)."""
    path = os.path.abspath(path)
    sub = os.path.join(path, CHECKPOINT_DIR)
    return sub if os.path.isdir(sub) else path


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for one run's workdir.

    With `asynchronous`, `save` returns once orbax holds the arrays and writes the
    files in the background (pass host copies, e.g. `host_copy(tree)`, when the
    device buffers are donated to the next step); every other method, and the next
    save, waits for the write to finish first.
    """

    def __init__(self, workdir: str, keep: int = 2, subdir: str = CHECKPOINT_DIR,
                 asynchronous: bool = False):
        self.directory = os.path.join(os.path.abspath(workdir), subdir)
        self.asynchronous = asynchronous
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=asynchronous))

    def wait(self) -> None:
        """Block until a save in flight is on disk."""
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        self.wait()
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        self.wait()
        return list(self.manager.all_steps())

    def save(self, step: int, weights: dict, meta: dict, state: dict | None = None) -> None:
        """Save `step`, replacing a checkpoint of the same step (a resumed run that fell
        back to an older checkpoint, or a best-model save, re-reaches saved steps)."""
        if step in self.all_steps():
            self.manager.delete(step)
        items = dict(weights=ocp.args.StandardSave(weights), meta=ocp.args.JsonSave(meta))
        if state is not None:
            items["state"] = ocp.args.StandardSave(state)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        if not self.asynchronous:
            self.wait()

    def restore(self, step: int, abstract_state: Any) -> tuple[dict, dict]:
        """(state, meta) of `step`, with `abstract_state` giving structure and shardings."""
        self.wait()
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def set_aside(self, steps: list[int], main_process: bool = True) -> str:
        """Move unreadable `steps` to `<workdir>/<subdir>_unreadable/` (kept for
        inspection, out of the way of resuming); returns that directory."""
        aside = self.directory.rstrip(os.sep) + "_unreadable"
        if main_process:
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                src = os.path.join(self.directory, str(step))
                if os.path.exists(src):
                    dst = os.path.join(aside, str(step))
                    if os.path.exists(dst):
                        shutil.rmtree(dst)
                    shutil.move(src, dst)
        return aside

    def reload(self) -> None:
        """Re-read the saved steps from disk (after `set_aside`)."""
        self.manager.reload()

    def close(self) -> None:
        self.wait()
        self.manager.close()


def _local_target(manager, step: int):
    """Abstract weights on this process's first device, whatever topology saved them
    (a multi-host run's checkpoint then loads in one process)."""
    meta = manager.item_metadata(step)["weights"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)


def load_weights(path: str, step: int | None = None) -> tuple[Any, Any, int]:
    """(params, batch_stats, step) saved by a run (its workdir or checkpoint dir).

    The params are the run's hard-quantized weights (`method.project(latent)`);
    for a full-precision run they are its trained weights.
    """
    directory = checkpoint_dir(path)
    if not os.path.isdir(directory):
        raise CheckpointError(
            f"no checkpoint directory at {directory!r}: point config.init_checkpoint (or "
            f"--workdir) at the workdir of a finished run.")
    manager = ocp.CheckpointManager(directory, item_handlers=dict(weights=ocp.StandardCheckpointHandler()),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"{directory!r} holds no saved step; train that run first.")
    try:
        target = _local_target(manager, step)
        out = manager.restore(step, args=ocp.args.Composite(weights=ocp.args.StandardRestore(target)))
    except Exception as e:  # orbax raises several types for missing/corrupt files
        raise CheckpointError(
            f"cannot read the checkpoint at {os.path.join(directory, str(step))!r}: {e}") from None
    weights = jax.tree.map(lambda x: x, out.weights)
    return weights["params"], weights.get("batch_stats", {}), int(step)
