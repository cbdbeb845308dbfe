"""Run outputs for metrics: `metrics.jsonl`, TensorBoard events and `curves.png`."""
from __future__ import annotations

import json
import os
import sys


def _summary_writer():
    """tensorboardX's SummaryWriter, imported without torch (its optional import of
    torch costs seconds per run and is only used for torch tensors)."""
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError during this import
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
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


def read_metrics(path: str) -> list[dict]:
    """The records of a `metrics.jsonl` file (or of the workdir holding one)."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(workdir: str) -> str | None:
    """Write `curves.png`: training loss, and train/val/test accuracy vs step."""
    records = read_metrics(workdir)
    if not records:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
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
    plt.close(fig)
    return out
