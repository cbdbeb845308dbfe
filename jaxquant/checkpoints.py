"""Orbax checkpoints of a run: resumable train state plus the hard-quantized weights.

Each saved step holds three items:
- `state`:   the full TrainState (latent, optimizer state, BN stats, step, rng);
- `weights`: {'params': method.project(latent), 'batch_stats': ...} — what
             export, evaluation and warm starts read, without knowing the method;
- `meta`:    JSON (best validation/test accuracy so far, ...).

Every step directory is sealed once orbax has finished writing it: `sha256.json`
beside the items lists each file of the step with its size and SHA-256 (process 0
writes it after the save barrier of a multi-process run). A restore first checks
the files it reads against that list, so a flipped bit or a truncated file is
named instead of loaded: resuming verifies the whole step, `load_weights` (export,
evaluation, warm starts) the `weights` item. A step without the list (saved by an
older jaxquant, or killed between the save and the seal) loads unverified.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp

from jaxquant import parallel
from jaxquant.errors import UserError

CHECKPOINT_DIR = "checkpoints"
CHECKSUMS = "sha256.json"  # in each step directory: {relative path: {bytes, sha256}}
_CHECKSUM_FORMAT = "jaxquant-checkpoint-checksums"


class CheckpointError(UserError):
    """A checkpoint that cannot be found or read."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file whose size or SHA-256 differs from the one recorded at save time."""


# ------------------------------------------------------------------ checksums

def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: str) -> list[str]:
    """Paths (relative to `step_dir`, '/'-separated, sorted) of the files of a step."""
    out = []
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir).replace(os.sep, "/")
            if rel != CHECKSUMS:
                out.append(rel)
    return sorted(out)


def seal(step_dir: str) -> dict:
    """Write `<step_dir>/sha256.json`: the size and SHA-256 of every file of the step.

    Call it once the step is complete on disk (after orbax's save and, across
    processes, its barrier); written to a temporary name and renamed, so a crash
    leaves either no list or a whole one. Returns the list.
    """
    files = {rel: dict(bytes=os.path.getsize(os.path.join(step_dir, rel)),
                       sha256=_sha256(os.path.join(step_dir, rel))) for rel in _files(step_dir)}
    record = dict(format=_CHECKSUM_FORMAT, files=files)
    tmp = os.path.join(step_dir, CHECKSUMS + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(step_dir, CHECKSUMS))
    return record


def verify(step_dir: str, items: Sequence[str] | None = None) -> bool:
    """Check the files of a step (those under `items`, or all) against its `sha256.json`.

    True if they match; False if the step was never sealed (no `sha256.json`);
    `CorruptCheckpointError` naming the first file that is missing, has another size
    or another SHA-256 (and when the list itself is unreadable).
    """
    path = os.path.join(step_dir, CHECKSUMS)
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            record = json.load(f)
        files = record["files"]
        if record.get("format") != _CHECKSUM_FORMAT or not isinstance(files, dict):
            raise ValueError(f"not a {_CHECKSUM_FORMAT} file")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(f"{path}: unreadable checksum list ({e})") from None
    for rel in sorted(files):
        if items is not None and rel.split("/", 1)[0] not in items:
            continue
        want, file = files[rel], os.path.join(step_dir, rel)
        if not os.path.isfile(file):
            raise CorruptCheckpointError(f"{file}: missing (it was saved with the checkpoint)")
        size = os.path.getsize(file)
        if size != want["bytes"]:
            raise CorruptCheckpointError(f"{file}: {size} bytes, {want['bytes']} were saved "
                                         f"(truncated or overwritten)")
        if _sha256(file) != want["sha256"]:
            raise CorruptCheckpointError(f"{file}: SHA-256 mismatch (the file changed after "
                                         f"it was saved)")
    return True


_TS_NOISE = re.compile(r"\s*(\[tensorstore_spec=.*|See full TensorStore details:.*)$", re.S)
_LOCAL_FILE = re.compile(r'local file "([^"]+)"')
_READING = re.compile(r'Error reading "([^"]+)" in OCDBT')


def describe_read_error(error: BaseException) -> str:
    """A one-line reason for a failed orbax read: the file it names and what went wrong,
    without the TensorStore spec orbax appends (about 1,000 characters)."""
    if isinstance(error, CheckpointError):
        return str(error)
    chain, e = [], error
    while e is not None and e not in chain and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    texts = [_TS_NOISE.sub("", " ".join(str(x).split())).strip() for x in chain]
    texts = [t for t in texts if t] or [type(error).__name__]
    named = [t for t in texts if _LOCAL_FILE.search(t)]
    if named:  # '... reading "<key>" ... local file "<path>": <reason>' -> '<path>: <reason> (<key>)'
        last = list(_LOCAL_FILE.finditer(named[0]))[-1]
        reason = named[0][last.end():].lstrip(': ') or named[0]
        key = _READING.search(named[0])
        text = f"{last.group(1)}: {reason}" + (f" (reading {key.group(1)})" if key else "")
    else:
        text = texts[-1] if len(texts[0]) > 300 else texts[0]
    return text if len(text) <= 300 else text[:297] + "..."


class _ExpectedOrbaxWarnings(logging.Filter):
    """Drops the warnings orbax gives on every read-only restore of one item, which
    `load_weights` does on purpose; every other record passes."""
    _EXPECTED = ("Given directory is read only", "was found in the checkpoint, but could not be restored",
                 "CheckpointManagerOptions.read_only=True")

    def filter(self, record):
        return not any(m in record.getMessage() for m in self._EXPECTED)


def quiet_orbax_logs() -> None:
    """For the export / evaluate CLIs: orbax's INFO chatter off (absl verbosity WARNING),
    its read-only-restore warnings dropped; other warnings are still printed."""
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    _drop_expected_orbax_warnings()


def _drop_expected_orbax_warnings() -> None:
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _ExpectedOrbaxWarnings) for f in logger.filters):
        logger.addFilter(_ExpectedOrbaxWarnings())


def checkpoint_dir(path: str) -> str:
    """The checkpoint directory of a workdir (or `path` itself if it is one)."""
    path = os.path.abspath(path)
    sub = os.path.join(path, CHECKPOINT_DIR)
    return sub if os.path.isdir(sub) else path


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for one run's workdir.

    With `asynchronous=True`, `save` returns once the arrays are copied (on the device,
    so that a donated train state can be overwritten by the next step) and orbax writes
    the files in the background while training goes on; the step is sealed as soon as
    orbax has finished it. Every other method first waits for that save to be
    written and sealed (`wait`), so what they read is complete. A run of several
    processes saves synchronously whatever `asynchronous` says (orbax's asynchronous
    commit of arrays sharded over processes needs barriers this class does not run).
    """

    def __init__(self, workdir: str, keep: int = 2, subdir: str = CHECKPOINT_DIR,
                 asynchronous: bool = False):
        self.directory = os.path.join(os.path.abspath(workdir), subdir)
        asynchronous = asynchronous and jax.process_count() == 1
        self.asynchronous = asynchronous
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=asynchronous))
        self._sealer: threading.Thread | None = None
        self._sealer_error: BaseException | None = None

    def latest_step(self) -> int | None:
        self.wait()
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        self.wait()
        return list(self.manager.all_steps())

    def save(self, step: int, weights: dict, meta: dict, state: dict | None = None) -> None:
        """Save `step`, replacing a checkpoint of the same step (a resumed run that fell
        back to an older checkpoint, or a best-model save, re-reaches saved steps)."""
        if step in self.all_steps():  # waits for the previous save
            self.manager.delete(step)
        items = dict(weights=weights, state=state)
        if self.asynchronous:  # orbax reads the arrays after `save` returns: our own copies
            items = jax.tree.map(lambda x: jax.device_put(x, may_alias=False)
                                 if isinstance(x, jax.Array) else x, items)
        args = {k: ocp.args.StandardSave(v) for k, v in items.items() if v is not None}
        self.manager.save(step, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args),
                          force=True)
        if not self.asynchronous:
            self._seal(step)
            parallel.sync("checkpoint sealed")
            return
        self._sealer = threading.Thread(target=self._seal, args=(step,), daemon=True,
                                        name=f"jaxquant-seal-{step}")
        self._sealer.start()

    def _seal(self, step: int) -> None:
        """Wait until orbax has written `step` (every process its part), then seal it."""
        try:
            self.manager.wait_until_finished()
            if parallel.is_main_process():
                seal(self.step_dir(step))
        except BaseException as e:  # raised in the caller's thread by `wait`
            self._sealer_error = e

    def wait(self) -> None:
        """Block until the last save is written and sealed (at once if none is under way);
        an error of that save is raised here."""
        if self._sealer is None:
            return
        self._sealer.join()
        self._sealer = None
        error, self._sealer_error = self._sealer_error, None
        if error is not None:
            raise error
        parallel.sync("checkpoint sealed")

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def verify(self, step: int) -> bool:
        """True if every file of `step` matches its checksum, False if the step is not
        sealed; `CorruptCheckpointError` naming the file otherwise (see `verify`)."""
        self.wait()
        return verify(self.step_dir(step))

    def latest_verified_step(self) -> int | None:
        """The newest step whose files all match their checksums (None if there is none)."""
        for step in sorted(self.all_steps(), reverse=True):
            try:
                if self.verify(step):
                    return step
            except CorruptCheckpointError:
                continue
        return None

    def restore(self, step: int, abstract_state: Any) -> tuple[dict, dict]:
        """(state, meta) of `step`, with `abstract_state` giving structure and shardings.

        The step's files are checked against its checksums first
        (`CorruptCheckpointError` names a changed file)."""
        self.verify(step)  # waits for a save under way
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def set_aside(self, steps: list[int], main_process: bool = True) -> str:
        """Move unreadable `steps` to `<workdir>/<subdir>_unreadable/` (kept for
        inspection, out of the way of resuming); returns that directory."""
        self.wait()
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
        self.wait()
        self.manager.reload()

    def close(self) -> None:
        """Wait for a save under way (written and sealed), then close orbax's manager."""
        try:
            self.wait()
        finally:
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
    for a full-precision run they are its trained weights. The files of the `weights`
    item are checked against the step's checksums first: a changed one is a
    `CheckpointError` naming it.
    """
    _drop_expected_orbax_warnings()
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
    where = os.path.join(directory, str(step))
    try:
        if not verify(where, items=("weights",)):
            logging.getLogger(__name__).warning(
                "%s has no %s (saved by an older jaxquant, or interrupted before it was "
                "sealed); its weights are loaded unverified.", where, CHECKSUMS)
        target = _local_target(manager, step)
        out = manager.restore(step, args=ocp.args.Composite(weights=ocp.args.StandardRestore(target)))
    except Exception as e:  # orbax raises several types for missing/corrupt files
        raise CheckpointError(f"cannot read the checkpoint at {where!r}: {describe_read_error(e)}. "
                              f"Export or warm-start from another step, or train the run "
                              f"again.") from None
    weights = jax.tree.map(lambda x: x, out.weights)
    return weights["params"], weights.get("batch_stats", {}), int(step)
