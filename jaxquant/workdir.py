"""A run's workdir: what may be written there, replaced by --overwrite, or resumed.

The rules (README "Reliability"):

- the workdir path is checked before anything touches the disk or loads data: not
  empty, not a file, not under a file, writable;
- a workdir is either new, empty, or a jaxquant run (its `config.json` and the outputs
  listed in `RUN_FILES` / `RUN_DIRS`); a folder holding anything else is never written
  into, and `--overwrite` never deletes it: the refusal names the foreign entries;
- `--overwrite` replaces a recognisable run and says what it replaced;
- a run is resumed only with a config that follows the same trajectory: every field
  except `CAN_CHANGE_ON_RESUME` must equal the one in `config.json`, otherwise the
  refusal lists old -> new values (the old `config.json` is left as it was). Accepted
  changes are written to `config.json` and appended to `config_history.jsonl`;
- a run that never reached its first checkpoint (preempted during start-up) simply
  starts again;
- one run at a time: an OS lock (`fcntl.flock`) on `<workdir>/.jaxquant.lock`, held by
  process 0 for the whole run; a second run is refused naming the pid, host and start
  time of the one that holds it.

A new run output file must be added to `RUN_FILES` / `RUN_DIRS`, or `--overwrite`
will refuse the runs that hold it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import re
import shutil
import socket
import sys
import time
from typing import Any

from jaxquant.errors import UserError

CONFIG = "config.json"
HISTORY = "config_history.jsonl"
LOCK = ".jaxquant.lock"
COMPARE_LOG = "compare.log"  # jaxquant.compare writes it into the run's workdir before the run
RUN_FILES = (CONFIG, HISTORY, LOCK, COMPARE_LOG, "metrics.jsonl", "summary.txt", "result.json",
             "curves.png", "method_state.json")
CHECKPOINT_DIRS = ("checkpoints", "best", "checkpoints_unreadable", "best_unreadable")
RUN_DIRS = CHECKPOINT_DIRS + ("tensorboard", "export")
_STEP_DIR = re.compile(r"\d+(\..+)?")  # orbax: '<step>' or '<step>.orbax-checkpoint-tmp-<n>'
_CONFIG_SECTIONS = {"dataset", "model", "method", "train"}

# Fields that cannot change the training trajectory (the params, optimizer state and
# batches of every step): they may differ when a run is resumed. Every other field
# (seed, init_checkpoint, dataset name/validation/augment/image_size, model, method,
# quant, optimizer, schedule, ldnq, train.batch_size/epochs/steps) must match: the
# length sets the schedules (cosine decay, annealing), so it is part of the trajectory.
CAN_CHANGE_ON_RESUME = (
    "train.eval_every_steps", "train.eval_batch_size", "train.log_every_steps",
    "train.checkpoint_every_steps", "train.keep_checkpoints", "train.select_best",
    "train.on_nonfinite",  # the NaN report tells the user to rerun with 'skip'
    "dataset.data_dir",    # where the files are (moved data, another cluster's mount)
)


class WorkdirError(UserError):
    """The workdir cannot be used: a bad path, foreign files, another config's run, a
    damaged run or another run using it."""


@dataclasses.dataclass
class Plan:
    """What a run will do with its workdir, decided before anything is written."""
    path: str
    config: Any                 # the new ConfigDict
    action: str                 # 'start' | 'resume' | 'replace'
    changes: list               # [(field, old, new)] accepted for a resume
    stale: list                 # run outputs to delete before starting (no checkpoint yet)
    replaced: str = ""          # what --overwrite replaces, for the log
    resumable: bool = True

    @property
    def resume(self) -> bool:
        return self.action == "resume"


# ------------------------------------------------------------------ the path

def check_path(path) -> str:
    """The absolute workdir path; `WorkdirError` if it cannot hold a run. Writes nothing."""
    if not isinstance(path, str) or not path.strip():
        raise WorkdirError(f"--workdir is empty ({path!r}); give the directory for the run's "
                           f"files, e.g. --workdir runs/my_run.")
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise WorkdirError(f"--workdir {path!r} is a file, not a directory; give a new or empty "
                           f"directory (or the workdir of a run to resume).")
    existing = full
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WorkdirError(f"--workdir {path!r} is under {existing!r}, which is a file; give a "
                           f"directory path.")
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only_fs(existing):
        what = "the workdir" if existing == full else f"{existing!r}, where it would be created,"
        raise WorkdirError(f"cannot write to --workdir {path!r}: {what} is not writable "
                           f"(permissions or a read-only filesystem); give a writable directory.")
    if existing == full and not os.access(full, os.R_OK):
        raise WorkdirError(f"cannot read --workdir {path!r} (permissions).")
    return full


def _read_only_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# ------------------------------------------------------------------ what it holds

@dataclasses.dataclass
class Contents:
    entries: list          # top-level names, the lock file left out
    foreign: list          # paths (relative) that no jaxquant run writes
    config: dict | None    # config.json, if it is a jaxquant config
    config_problem: str    # why config.json is missing or unreadable ('' if fine)
    steps: list            # checkpoint steps saved in checkpoints/

    @property
    def is_run(self) -> bool:
        return self.config is not None or bool(self.steps)


def survey(full: str) -> Contents:
    """What `full` holds (read only)."""
    if not os.path.isdir(full):
        return Contents([], [], None, "missing", [])
    entries = sorted(e for e in os.listdir(full) if e != LOCK)
    foreign = []
    for e in entries:
        p = os.path.join(full, e)
        if e in RUN_FILES:
            if os.path.isdir(p):
                foreign.append(e + "/")
        elif e in RUN_DIRS:
            if not os.path.isdir(p):
                foreign.append(e)
            elif e in CHECKPOINT_DIRS:
                foreign += [f"{e}/{x}" for x in sorted(os.listdir(p)) if not _STEP_DIR.fullmatch(x)]
            elif e == "tensorboard":
                foreign += [f"{e}/{x}" for x in sorted(os.listdir(p))
                            if not x.startswith("events.out.tfevents.")]
        else:
            foreign.append(e + ("/" if os.path.isdir(p) else ""))
    ckpt = os.path.join(full, "checkpoints")
    steps = sorted(int(x) for x in os.listdir(ckpt) if x.isdigit()) if os.path.isdir(ckpt) else []
    config, problem = None, ""
    path = os.path.join(full, CONFIG)
    if not os.path.exists(path):
        problem = "missing"
    else:
        try:
            with open(path) as f:
                config = json.load(f)
            if not (isinstance(config, dict) and _CONFIG_SECTIONS <= set(config)):
                config, problem = None, "not a jaxquant config"
        except (OSError, ValueError) as e:
            problem = f"unreadable: {e}"
        if config is None and not steps and CONFIG not in foreign:
            foreign.append(CONFIG)  # someone else's config.json
    return Contents(entries, foreign, config, problem, steps)


def _few(names, n=5) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# ------------------------------------------------------------------ resume compatibility

def _flat(tree, prefix="") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _same(a, b) -> bool:
    nan = lambda x: isinstance(x, float) and math.isnan(x)  # noqa: E731
    return a == b or (nan(a) and nan(b))


_ABSENT = "(absent)"


def _defaults(flat: dict) -> dict:
    """The default of every field of a config like `flat` (base_config(), plus the keys
    its method and model read: `config_check.section_keys`)."""
    from jaxquant.config import base_config
    from jaxquant.config_check import section_keys
    out = _flat(as_json(base_config()))
    for section in ("method", "model"):
        try:
            keys = section_keys(section, flat.get(f"{section}.name"))
        except Exception:  # an unknown or unavailable name: no defaults to add
            keys = None
        out.update({f"{section}.{k}": json.loads(json.dumps(v, default=str))  # as in config.json
                    for k, v in (keys or {}).items()})
    return out


def config_changes(old: dict, config) -> list:
    """[(field, old value, new value)] between a run's config.json and `config`; a field
    absent from one side counts as its default there (a field added to jaxquant after
    the run started, or a method key the run's config file left at its default, does
    not block its resume)."""
    new = _flat(as_json(config))
    before = _flat(old)
    old_defaults, new_defaults = _defaults(before), _defaults(new)
    changes = []
    for key in sorted(set(before) | set(new)):
        a = before.get(key, old_defaults.get(key, _ABSENT))
        b = new.get(key, new_defaults.get(key, _ABSENT))
        if not _same(a, b):
            changes.append((key, a, b))
    return changes


def as_json(config) -> dict:
    return json.loads(config.to_json_best_effort())


def _diff_text(changes, n=12) -> str:
    lines = [f"config.{k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in changes[:n]]
    if len(changes) > n:
        lines.append(f"... and {len(changes) - n} more")
    return "; ".join(lines)


# ------------------------------------------------------------------ the plan

def plan(path, config, *, overwrite: bool = False, resumable: bool = True,
         main_process: bool = True) -> Plan:
    """Decide what to do with the workdir `path` for `config` (reads only; raises
    `WorkdirError` for every refusal). `resumable=False` (L-DNQ): an unfinished run
    of the same config starts again instead of resuming. Only process 0 checks the
    lock (it takes it for all the run's processes)."""
    full = check_path(path)
    if main_process:
        check_not_locked(full)
    return _decide(full, config, overwrite, resumable)


def _decide(full, config, overwrite, resumable) -> Plan:
    c = survey(full)
    if not c.entries:
        return Plan(full, config, "start", [], [], resumable=resumable)
    if c.foreign and (overwrite or not c.is_run):
        why = ("--overwrite deletes only a folder that holds nothing but a jaxquant run"
               if overwrite else "jaxquant writes only into a new or empty folder, or a run's")
        raise WorkdirError(
            f"--workdir {full!r} is not {'only ' if c.is_run else ''}a jaxquant run: it holds "
            f"{_few(c.foreign)}. Nothing was changed; {why}. Use another --workdir"
            f"{', or move those files out' if c.is_run else ''}.")
    if overwrite:
        return Plan(full, config, "replace", [], [], replaced=_describe(c), resumable=resumable)
    if c.config is None:
        if c.steps:
            raise WorkdirError(
                f"{full!r} holds checkpoints but its config.json is {c.config_problem}, so they "
                f"cannot be checked against this config. Restore that file, use another "
                f"--workdir, or pass --overwrite to delete the run and start afresh.")
        # only leftovers of a run (e.g. jaxquant.compare's log): start
        return Plan(full, config, "start", [], _stale(c), resumable=resumable)
    changes = config_changes(c.config, config)
    blocking = [ch for ch in changes if ch[0] not in CAN_CHANGE_ON_RESUME]
    if blocking:
        progress = (f"checkpoints up to step {c.steps[-1]}" if c.steps else "no checkpoint yet")
        raise WorkdirError(
            f"--workdir {full!r} holds a run ({progress}) of another configuration; continuing "
            f"it with this one would mix two runs. Changed: {_diff_text(blocking)}. Nothing was "
            f"changed: rerun with the old values to resume, pass --overwrite to delete that run "
            f"and start afresh, or use another --workdir.")
    if c.steps and resumable:
        return Plan(full, config, "resume", changes, [], resumable=resumable)
    return Plan(full, config, "start", changes, _stale(c), resumable=resumable)


def _stale(c: Contents) -> list:
    """Outputs of a run that never checkpointed (deleted before it starts again)."""
    keep = (COMPARE_LOG, HISTORY, "checkpoints_unreadable", "best_unreadable")
    return [e for e in c.entries if e not in keep]


def _describe(c: Contents) -> str:
    parts = []
    if c.config:
        parts.append(", ".join(f"{s} {c.config[s].get('name')!r}" for s in ("method", "model", "dataset")
                               if isinstance(c.config.get(s), dict)))
    parts.append(f"checkpoints at steps {_few([str(s) for s in c.steps])}" if c.steps
                 else "no checkpoint")
    return "; ".join(parts)


# ------------------------------------------------------------------ the lock

def _holder(lock_path: str) -> str:
    try:
        with open(lock_path) as f:
            h = json.load(f)
        return (f"pid {h['pid']} on host {h['host']}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(h['started']))}")
    except (OSError, ValueError, KeyError, TypeError):
        return "details unknown"


def _in_use(path: str, holder: str) -> WorkdirError:
    return WorkdirError(
        f"--workdir {path!r} is in use by another jaxquant run ({holder}); two runs in one "
        f"workdir would mix their checkpoints and metrics. Wait for it to finish (or stop it: "
        f"it saves a checkpoint and this command then resumes it), or use another --workdir.")


def check_not_locked(full: str) -> None:
    """Refuse early (before loading data) if a live run holds the lock. Creates nothing."""
    lock_path = os.path.join(full, LOCK)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise _in_use(full, _holder(lock_path)) from None
    finally:
        os.close(fd)


class Lock:
    """An exclusive `fcntl.flock` on `<workdir>/.jaxquant.lock`; released by `release()` or
    when the process ends (whatever way it ends)."""

    def __init__(self, full: str):
        self.path = os.path.join(full, LOCK)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise _in_use(full, _holder(self.path)) from None
        info = dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(), argv=sys.argv)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps(info).encode())

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _all_agree(ok: bool) -> bool:
    """Whether `ok` holds on every process (a collective on several processes)."""
    import jax
    if jax.process_count() == 1:
        return ok
    import numpy as np
    from jax.experimental import multihost_utils
    return bool(np.min(multihost_utils.process_allgather(np.asarray(int(ok), np.int32))))


# ------------------------------------------------------------------ carrying out the plan

@contextlib.contextmanager
def claimed(p: Plan, *, main_process: bool = True, log=print):
    """Lock the workdir for the run (process 0), re-check the plan under the lock, carry
    out --overwrite / a fresh start, and write config.json for a new run. A resumed run's
    config.json is updated by `accept_resume` once its checkpoint is restored."""
    lock, error = None, None
    if main_process:
        try:
            os.makedirs(p.path, exist_ok=True)
            lock = Lock(p.path)
            now = _decide(p.path, p.config, p.action == "replace", p.resumable)  # under the lock
            if now.action != p.action:
                raise WorkdirError(f"--workdir {p.path!r} changed while this run was starting "
                                   f"(another process wrote into it); rerun the command.")
            if now.action == "replace":
                _delete(p.path, survey(p.path).entries)
                log(f"--overwrite: replaced the run in {p.path} ({now.replaced}).")
            else:
                _delete(p.path, now.stale)
            if not now.resume:
                write_config(p.path, p.config)
        except UserError as e:
            error = e
        except OSError as e:
            error = WorkdirError(f"cannot write to --workdir {p.path!r}: {e}.")
    if not _all_agree(error is None):
        if lock is not None:
            lock.release()
        raise error or WorkdirError(f"process 0 could not use --workdir {p.path!r} (see its log).")
    try:
        yield p
    finally:
        if lock is not None:
            lock.release()


def _delete(full: str, names) -> None:
    for name in names:
        if name in (LOCK, COMPARE_LOG):
            continue
        target = os.path.join(full, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)


def write_config(full: str, config) -> None:
    """`config.json`, replaced atomically (a crash leaves the old or the new file)."""
    tmp = os.path.join(full, CONFIG + ".tmp")
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(full, CONFIG))


def accept_resume(p: Plan, step: int, *, main_process: bool = True, log=print) -> None:
    """After a successful restore: record the fields that changed (config.json takes the
    new values; config_history.jsonl gets one line per accepted change set)."""
    if not p.changes:
        return
    log("resuming with changed settings that do not alter training: " + _diff_text(p.changes))
    if not main_process:
        return
    write_config(p.path, p.config)
    record = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), resumed_at_step=int(step),
                  changes={k: [a, b] for k, a, b in p.changes})
    with open(os.path.join(p.path, HISTORY), "a") as f:
        f.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------ checkpoint meta

def check_meta(meta, step: int) -> dict:
    """The run metadata of checkpoint `step`, checked (ValueError names the bad field):
    accuracies in [0, 1] (or -1 before the first evaluation), best_step in [-1, step],
    the carried metrics window well-formed. A checkpoint whose meta fails is treated as
    unreadable (set aside; the run resumes from the one before)."""
    if not isinstance(meta, dict):
        raise ValueError(f"meta is {type(meta).__name__}, not a mapping")
    for key in ("best_val_accuracy", "test_at_best_val"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v == -1 or 0 <= v <= 1):
            raise ValueError(f"meta {key}={v!r} is not an accuracy in [0, 1] (or -1)")
    b = meta.get("best_step")
    if isinstance(b, bool) or not isinstance(b, int) or not -1 <= b <= step:
        raise ValueError(f"meta best_step={b!r} is not a step in [-1, {step}]")
    if (b == -1) != (meta["best_val_accuracy"] == -1) or (b == -1) != (meta["test_at_best_val"] == -1):
        raise ValueError(f"meta best_step={b} disagrees with its accuracies")
    from jaxquant.metrics import window_from_json
    window_from_json(meta.get("pending", []))
    return meta
