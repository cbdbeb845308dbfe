"""Run outputs for metrics: `metrics.jsonl`, TensorBoard events and `curves.png`."""
from __future__ import annotations

import json
import os
import sys

import numpy as np


# tensorboardX imports these if present, for torch tensors and s3:// logdirs, neither of
# which a run uses (its workdir is a local folder); importing them costs ~1 s per run
_UNUSED_BY_TENSORBOARDX = ("torch", "boto3")


def _summary_writer():
    """tensorboardX's SummaryWriter, imported without torch and boto3."""
    if "tensorboardX" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    blocked = [m for m in _UNUSED_BY_TENSORBOARDX if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # `import m` raises ImportError during this import
    try:
        from tensorboardX import SummaryWriter
    finally:
        for m in blocked:
            del sys.modules[m]
    return SummaryWriter


class MetricsWriter:
    """Appends one JSON line per record to `<workdir>/metrics.jsonl` and mirrors
    the scalars to TensorBoard event files under `<workdir>/tensorboard`."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            self._tb = _summary_writer()(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, **scalars) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "step":
                self._tb.add_scalar(k, v, int(step))

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run rewrites them)."""
        if not (self.enabled and os.path.exists(self.path)):
            return
        kept = [r for r in read_metrics(self.path) if r["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str, warn=None) -> list[dict]:
    """The records of a `metrics.jsonl` file (or of the workdir holding one).

    A line that is not a JSON record (a run killed mid-write leaves a truncated last
    line) is dropped with a warning (`warn`, default: printed to stderr)."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    records = []
    with open(path) as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
                raise ValueError("not a record with an integer 'step'")
        except ValueError as e:
            cut = all(not rest.strip() for rest in lines[number:])  # the last line
            warn(f"{path}, line {number}: not a metrics record ({e})"
                 f"{'; a run stopped while writing it' if cut else ''}. Dropped that line.")
            continue
        records.append(record)
    return records


def window_to_json(host_metrics: list[dict]) -> list[dict]:
    """The per-step metrics not yet averaged into a record, as JSON (a checkpoint's meta
    carries them, so that a resumed run's next record averages the same steps as an
    uninterrupted run's)."""
    return [{k: np.asarray(v).tolist() for k, v in m.items()} for m in host_metrics]


def window_from_json(window) -> list[dict]:
    """The inverse of `window_to_json` (floats back to float32, as the step returns them);
    ValueError for anything else (a damaged or edited checkpoint meta)."""
    if not isinstance(window, list):
        raise ValueError(f"meta pending={window!r:.80} is not a list of step metrics")
    out = []
    for m in window:
        if not (isinstance(m, dict) and isinstance(m.get("finite"), bool)
                and all(isinstance(m.get(k), float) for k in ("train_loss", "train_accuracy"))):
            raise ValueError(f"meta pending entry {m!r:.80} is not the metrics of a step")
        entry = {}
        for k, v in m.items():
            if isinstance(v, bool):
                entry[k] = np.bool_(v)
            elif isinstance(v, (int, float)):
                entry[k] = np.float32(v)
            elif isinstance(v, list) and all(isinstance(x, bool) for x in v):
                entry[k] = np.asarray(v, bool)
            else:
                raise ValueError(f"meta pending value {k}={v!r:.80} is not a step metric")
        out.append(entry)
    return out


def plot_curves(workdir: str) -> str | None:
    """Write `curves.png`: training loss, and train/val/test accuracy vs step."""
    records = read_metrics(workdir)
    if not records:
        return None
    from matplotlib.figure import Figure  # not pyplot: no GUI backend, a faster import

    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, ax in (("train_loss", ax_loss), ("train_accuracy", ax_acc),
                    ("val_accuracy", ax_acc), ("test_accuracy", ax_acc)):
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=key, marker="." if len(pts) < 30 else None)
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy (eval: hard-quantized)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = os.path.join(workdir, "curves.png")
    fig.savefig(out, dpi=100)
    return out
