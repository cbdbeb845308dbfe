"""Method comparison on one budget: every method trained on the same data, model and steps.

    python -m jaxquant.compare --config configs/fp_digits.py \
        --methods fp,bc,bwn,md_tanh_s,pmf,proxquant_binary --workdir runs/cmp

The base config fixes dataset, model, optimizer, schedule and budget; each entry of
`--methods` replaces only `config.method` (and, where a preset says so,
`config.quant`) with a preset from `PRESETS` or a plain registered method name,
optionally followed by overrides: `dorefa:weight_bits=2:detach_max=True`
(a key without a dot is a `config.method` key; `quant.exclude=('head/.*',)`,
`optimizer.lr=0.01` address other sections). Base-config fields are overridden
as in `jaxquant.main`: `--config.train.epochs=5`.

Each method trains in `<workdir>/<label>` through `jaxquant.train.run` (or a preset's
own runner, e.g. L-DNQ's post-training one; either way an
interrupted comparison resumes, and a finished method is not retrained), is
exported (`jaxquant.export`), and the comparison is written to
`<workdir>/comparison.md` (test accuracy of the hard-quantized network, weight
bits, exported size and compression vs float32, train time), `comparison.json`
and `comparison.png` (test accuracy curves). A method that fails to build or
train (for instance one whose family module is not in this checkout) becomes
an error row; the other methods still run.

`--seeds=0,1,2` (or `--seeds=3`, the first three seeds) trains every method once per
seed (`config.seed`), in `<workdir>/<label>/seed<k>`, seed by seed (all methods of
seed 0 first), and reports each method's test accuracy as mean ± sample standard
deviation over its seeds with n; `comparison.json` holds every run, `comparison.png`
the mean curve of each method with a ±1 std band.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
from typing import Any, Callable, NamedTuple

import ml_collections

from jaxquant.errors import UserError
from jaxquant.papers import pdqat as _pdqat_papers
from jaxquant.papers.mirror import OFFICIAL_OPTIONS as _MD_OFFICIAL

# --------------------------------------------------------------------- presets


class Budget(NamedTuple):
    """The training length (and base learning rate) a preset may scale its schedule
    hyperparameters to; lr 0 = not known."""
    total_steps: int
    steps_per_epoch: int
    lr: float = 0.0

    @property
    def epochs(self) -> float:
        return self.total_steps / max(self.steps_per_epoch, 1)


def _anneal(beta_end: float = 1e4, increments: int = 100) -> Callable[[Budget], dict]:
    """Mirror-descent / PMF annealing beta_t = bts^ceil(t / bti) (METHODS.md §1), scaled to
    the budget: `increments` increases of beta that reach `beta_end` at the last step.

    The papers' CIFAR schedules are of this size (PMF ResNet-18: 1.1^(100k/1000) ~ 1.4e4,
    capped at 1e4); on a 600-step digits budget this gives bti = 6, bts = 1.096.
    """
    def make(budget: Budget) -> dict:
        bti = max(budget.total_steps // increments, 1)
        n = max(math.ceil(budget.total_steps / bti), 1)
        return dict(bts=round(beta_end ** (1.0 / n), 5), bti=bti)
    return make


def _homotopy(paper_reg_rate: float = 1e-4, paper_freeze: int = 200,
              paper_steps_per_epoch: int = 390, paper_lr: float = 1e-2) -> Callable[[Budget], dict]:
    """ProxQuant lambda_t = reg_rate * epoch, freeze at `freeze_epoch` (METHODS.md §2), scaled
    to the budget: the freeze falls at 2/3 of it (paper: 200 of 300 epochs), and reg_rate
    keeps the paper's accumulated prox strength sum_t lr reg_rate epoch(t) ~ lr * reg_rate *
    steps_per_epoch * freeze^2 / 2 (paper: Adam lr 0.01 constant), using the base config's
    lr where the budget knows it (the scaling configs/proxquant_binary_digits.py uses).
    A budget of fewer than 3 epochs counts 15 pseudo-epochs instead (`epoch_steps`)."""
    def make(budget: Budget) -> dict:
        extra, spe = {}, max(budget.steps_per_epoch, 1)
        if budget.epochs < _MIN_HOMOTOPY_EPOCHS:
            # shorter than a few passes over the data (a language model on random windows):
            # the homotopy counts pseudo-epochs of total / 15 steps (the paper's 300 epochs
            # / 20), and Adam is not rebuilt at each of them (that would restart it every
            # few steps; the code rebuilds it every 390)
            spe = max(budget.total_steps // _PSEUDO_EPOCHS, 1)
            extra = dict(epoch_steps=spe, reset_optimizer_every_epoch=False)
        freeze = max(round(2 * budget.total_steps / spe / 3), 1)
        work = paper_lr * paper_reg_rate * paper_steps_per_epoch * paper_freeze ** 2
        rate = work / ((budget.lr or paper_lr) * spe * freeze ** 2)
        return dict(reg_rate=float(f"{rate:.3g}"), freeze_epoch=freeze, **extra)
    return make


_MIN_HOMOTOPY_EPOCHS, _PSEUDO_EPOCHS = 3, 15


# label -> overlay of the base config: `method` (config.method; a value that is a function
# of the Budget is evaluated per comparison), optional `quant` (config.quant rules the
# paper prescribes), `init_checkpoint` (the label of another run of this comparison,
# of the same seed, to warm-start from) and
# `runner` ('module:function' with train.run's signature, for methods that are not
# trained by the trainer). Adding a method to the comparison = adding one entry here;
# a plain registered method name needs none.
_PAPER_TERNARY_QUANT = dict(exclude=("stem/.*", "head/.*"))  # ProxQuant ternary: first/last fp
_PDQAT_CODE = _pdqat_papers.CODE_DETAILS  # PD-QAT's table settings (con-qat's behaviour)
PRESETS: dict[str, dict[str, Any]] = {
    "fp": dict(method=dict(name="fp")),
    "ste": dict(method=dict(name="ste", quantizer="sign")),
    "ste_gated": dict(method=dict(name="ste", quantizer="sign", gated=True)),
    "twn": dict(method=dict(name="ste", quantizer="twn")),
    "bc": dict(method=dict(name="binary_connect", variant="md_bnn")),
    # ProxQuant's BinaryConnect as its code ran it (lazy projection, freeze, Adam rebuilt
    # every epoch); "bc" above is md-bnn's, whose code builds Adam once.
    "bc_proxquant": dict(method=dict(name="proxquant", kind="binary", projection_mode="lazy",
                                     reset_optimizer_every_epoch=True, anneal=_homotopy())),
    "bwn": dict(method=dict(name="bwn")),
    "dorefa": dict(method=dict(name="dorefa", weight_bits=1)),
    "dorefa_w2": dict(method=dict(name="dorefa", weight_bits=2)),
    "dorefa_w4": dict(method=dict(name="dorefa", weight_bits=4)),
    # MD / PMF with the official code's rules (jaxquant.papers.mirror.OFFICIAL_OPTIONS)
    **{m: dict(method=dict(name=m, levels=2, **_MD_OFFICIAL[m], anneal=_anneal()))
       for m in ("md_tanh", "md_tanh_s", "md_softmax", "md_softmax_s")},
    "gd_tanh": dict(method=dict(name="gd_tanh", levels=2, anneal=_anneal())),
    "pmf": dict(method=dict(name="pmf", levels=2, beta_max=1e4, **_MD_OFFICIAL["pmf"],
                            anneal=_anneal())),
    "pmf_ternary": dict(method=dict(name="pmf", levels=3, beta_max=1e4, **_MD_OFFICIAL["pmf"],
                                    anneal=_anneal())),
    **{f"{m}_ternary": dict(method=dict(name=m, levels=3, **_MD_OFFICIAL[m], anneal=_anneal()))
       for m in ("md_tanh_s", "md_softmax_s")},
    # ProxQuant as its code ran it: the homotopy and freeze scaled to the budget, and Adam
    # rebuilt every epoch (utils.adjust_optimizer; the published numbers come from it).
    "proxquant_binary": dict(method=dict(name="proxquant", kind="binary", projection_mode="prox",
                                         reset_optimizer_every_epoch=True, anneal=_homotopy())),
    "proxquant_ternary": dict(method=dict(name="proxquant", kind="ternary", projection_mode="prox",
                                          reset_optimizer_every_epoch=True, anneal=_homotopy()),
                              quant=_PAPER_TERNARY_QUANT),
    # the same on the layers the base config quantizes (a transformer LM has no stem)
    "proxquant_ternary_lm": dict(method=dict(name="proxquant", kind="ternary",
                                             projection_mode="prox",
                                             reset_optimizer_every_epoch=True, anneal=_homotopy())),
    # ProxQuant's quantized LSTM (its code was never released: plain Adam, as the paper
    # describes): the multi-bit prox vs the straight-through gradient method on the same
    # alternating quantizer (Xu et al. 2018), `bits` 1..3 by override (proxquant_multibit:bits=3)
    "proxquant_multibit": dict(method=dict(name="proxquant", kind="multibit", projection_mode="prox",
                                           anneal=_homotopy())),
    "lazy_multibit": dict(method=dict(name="proxquant", kind="multibit", projection_mode="lazy",
                                      anneal=_homotopy())),
    "metaquant": dict(method=dict(name="metaquant", forward="dorefa", bits=1, meta_net="multifc")),
    "metaquant_fcgrad": dict(method=dict(name="metaquant", forward="dorefa", bits=1,
                                         meta_net="fcgrad")),
    "metaquant_lstmfc": dict(method=dict(name="metaquant", forward="dorefa", bits=1,
                                         meta_net="lstmfc")),
    "pdqat": dict(method=dict(name="pdqat", bits=1)),
    "pdqat_layerwise": dict(method=dict(name="pdqat", bits=1, layerwise=True)),
    # PD-QAT as its paper-table configs run it (con-qat's behaviour, jaxquant.papers.pdqat),
    # and its baseline column's two scripts (train_anyprec.py, train_vanilla.py --vanilla)
    "pdqat_table": dict(method=dict(name="pdqat", bits=1, **_PDQAT_CODE)),
    "pdqat_layerwise_table": dict(method=dict(name="pdqat", bits=1, layerwise=True, **_PDQAT_CODE)),
    "pdqat_anyprec": dict(method=dict(name="pdqat", bits=1, baseline="anyprec")),
    "pdqat_vanilla": dict(method=dict(name="pdqat", bits=1, baseline="vanilla")),
    # post-training: quantizes this comparison's own full-precision run (list fp first);
    # the library's consistent H, not the official code's permuted one (a paper-table
    # option, config.ldnq.hessian_order='official'): the preset compares the algorithm
    "ldnq": dict(method=dict(name="ldnq"), init_checkpoint="fp",
                 quant=dict(include=(".*kernel", ".*bias"), exclude=("(.*/)?bn[^/]*/.*",)),
                 runner="jaxquant.ptq.runner:run"),
}


class CompareError(UserError):
    """A bad --methods entry (unknown preset, malformed override, duplicate label)."""


class Interrupted(Exception):
    """A method's training was stopped by SIGTERM/SIGINT: the comparison stops too (resumable)."""


class Spec(NamedTuple):
    """One entry of --methods: its label (workdir name), preset/method name and overrides."""
    label: str
    name: str
    overrides: tuple  # ((dotted key, value), ...)


def valid_names() -> list[str]:
    """Presets and plain registered method names accepted by --methods."""
    from jaxquant import methods
    return sorted(set(PRESETS) | set(methods.names()))


def _split_methods(text: str) -> list[str]:
    """Split on commas that are not inside (), [] or quotes (override values may be tuples)."""
    items, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += ch
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string: sign, binary, ...


def parse_specs(text: str) -> list[Spec]:
    """'fp,bc,dorefa:weight_bits=2' -> Specs; raises CompareError naming a bad entry."""
    specs = []
    for item in _split_methods(text):
        name, *parts = item.split(":")
        if name not in valid_names():
            import difflib
            close = difflib.get_close_matches(name, valid_names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise CompareError(
                f"unknown method or preset {name!r} in --methods.{hint} Valid presets: "
                f"{', '.join(sorted(PRESETS))}; plain method names: "
                f"{', '.join(n for n in valid_names() if n not in PRESETS)}.")
        overrides = []
        for part in parts:
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise CompareError(f"bad override {part!r} in --methods entry {item!r}; write "
                                   f"name:key=value (e.g. dorefa:weight_bits=2).")
            overrides.append((key if "." in key else f"method.{key}", _value(value)))
        label = re.sub(r"[^A-Za-z0-9_.=+-]", "_", item.replace(":", "-"))
        specs.append(Spec(label, name, tuple(overrides)))
    if not specs:
        raise CompareError(f"--methods lists no method; e.g. --methods=fp,bc. Valid: "
                           f"{', '.join(valid_names())}.")
    labels = [s.label for s in specs]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise CompareError(f"--methods lists {', '.join(dup)} more than once.")
    return specs


def _set_path(config, dotted: str, value) -> None:
    *sections, key = dotted.split(".")
    node = config
    for s in sections:
        if s not in node:
            raise CompareError(f"override {dotted}={value!r}: the config has no section "
                               f"{s!r}.")
        node = node[s]
    node[key] = value


def parse_seeds(text: str) -> list[int] | None:
    """--seeds: '' -> None (one run per method at config.seed); 'N' -> seeds 0..N-1;
    'a,b,c' -> those seeds. Raises CompareError for anything else."""
    text = str(text or "").strip()
    if not text:
        return None
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise ValueError
            return list(range(n))
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise CompareError(f"bad --seeds={text!r}: give a count (--seeds=3 for seeds 0, 1, 2) or "
                           f"distinct seeds >= 0 separated by commas (--seeds=0,1,2).")
    return seeds


def run_dir(workdir: str, label: str, seed: int | None = None) -> str:
    """Where one run of a comparison lives: <workdir>/<label>[/seed<k>]."""
    path = os.path.join(workdir, label)
    return path if seed is None else os.path.join(path, f"seed{seed}")


def method_config(base, spec: Spec, budget: Budget, workdir: str, seed: int | None = None):
    """The base config with `spec`'s preset (or plain method name) and overrides applied;
    with `seed`, config.seed is that seed (and a warm start comes from the same seed's run)."""
    config = copy.deepcopy(base)
    preset = PRESETS.get(spec.name, dict(method=dict(name=spec.name)))
    with config.unlocked():
        method = {}
        for key, value in preset["method"].items():
            if callable(value):
                method.update(value(budget))
            else:
                method[key] = value
        config.method = ml_collections.ConfigDict(method)
        if "quant" in preset:
            config.quant.update(preset["quant"])
        if seed is not None:
            config.seed = int(seed)
        if "init_checkpoint" in preset:
            config.init_checkpoint = run_dir(workdir, preset["init_checkpoint"], seed)
        for dotted, value in spec.overrides:
            _set_path(config, dotted, value)
    return config


def budget_of(config) -> Budget:
    """Training length of `config` (steps, steps per epoch), as the trainer computes it, and
    its base learning rate."""
    from jaxquant import data
    ds = data.load(config.dataset)
    n = len(ds.train.labels) if ds.train.in_memory else len(ds.train)
    spe = max(n // int(config.train.batch_size), 1)
    return Budget(int(config.train.steps) or int(config.train.epochs) * spe, spe,
                  float(config.optimizer.lr))


# --------------------------------------------------------------------- one method


class _Tee:
    """stdout for one method's training: everything to its log file, progress lines to `echo`."""
    PROGRESS = ("step ", "resumed", "warning", "stopped")

    def __init__(self, path: str, echo: Callable[[str], None]):
        self.file = open(path, "a")
        self.echo = echo
        self.terminal = sys.stdout  # echo there, not into this tee once stdout is redirected
        self.buffer = ""

    def write(self, text: str) -> int:
        self.file.write(text)
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            if line.startswith(self.PROGRESS):
                with contextlib.redirect_stdout(self.terminal):
                    self.echo(line)
        return len(text)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _finished_result(workdir: str, config) -> dict | None:
    """result.json of a finished run of exactly `config` in `workdir`, else None."""
    try:
        with open(os.path.join(workdir, "result.json")) as f:
            result = json.load(f)
        with open(os.path.join(workdir, "config.json")) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return None
    if result.get("preempted") or "test_accuracy" not in result:
        return None
    return result if old == json.loads(config.to_json_best_effort()) else None


def size_of(manifest: dict) -> dict:
    """Weight bits, exported bytes and compression of an export manifest (export's accounting).

    bits: the code widths of the packed (quantized) param tensors, '32' if none is packed;
    bytes: sum of `export.stored_bytes` (payload + codebooks, BN statistics included);
    compression: float32 bytes of the same tensors / bytes.
    """
    from jaxquant import export
    tensors = manifest["tensors"]
    stored = sum(export.stored_bytes(e) for e in tensors)
    dense = sum(4 * math.prod(e["shape"]) for e in tensors)
    packed = sorted({e["bits"] for e in tensors
                     if e["collection"] == "params" and e["encoding"] == "packed"})
    n_params = sum(math.prod(e["shape"]) for e in tensors if e["collection"] == "params")
    n_packed = sum(math.prod(e["shape"]) for e in tensors
                   if e["collection"] == "params" and e["encoding"] == "packed")
    return dict(bits="/".join(map(str, packed)) if packed else "32", bytes=int(stored),
                float32_bytes=int(dense), compression=dense / stored if stored else float("nan"),
                quantized_fraction=n_packed / max(n_params, 1))


def _runner(spec: Spec) -> Callable:
    """train.run, or the preset's own `runner` ('module:function')."""
    target = PRESETS.get(spec.name, {}).get("runner")
    if not target:
        from jaxquant import train
        return train.run
    import importlib
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_method(spec: Spec, config, workdir: str, *, overwrite: bool = False,
               echo: Callable[[str], None] = print, tag: str = "") -> dict:
    """Train, export and measure one method; a row of the comparison (never raises for
    a method that fails: the row's `error` says why). Its progress lines are echoed
    after `tag` (default `[<label>]`; the comparison's `[3/11] md_tanh_s:`)."""
    tag = tag or f"[{spec.label}]"
    from jaxquant import export
    row = dict(label=spec.label, method=str(config.method.name),
               method_config=config.method.to_dict(), workdir=workdir, error=None)
    from jaxquant import workdir as workdirs
    try:  # refuses a folder with foreign files, or a run of another config without overwrite
        if workdirs.plan(workdir, config, overwrite=overwrite).action == "replace":
            shutil.rmtree(workdir)
    except UserError as e:
        row["error"] = " ".join(str(e).split())
        return row
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "compare.log")
    tee = _Tee(log_path, lambda line: echo(f"  {tag} {line}"))
    reused = None if overwrite else _finished_result(workdir, config)
    try:
        if reused is not None:
            result = reused
            echo(f"  {tag} already trained in {workdir}; reusing its result.json")
        else:
            with contextlib.redirect_stdout(tee):
                result = _runner(spec)(config, workdir)
            if result.get("preempted"):
                raise Interrupted(f"{spec.label} stopped at step {result['step']}; rerun the same "
                                  f"command to resume the comparison.")
        # the checkpoint the reported accuracy belongs to: the best validation step with
        # select_best and a validation split (without one the trainer reports the last step)
        selected = bool(config.train.select_best) and result.get("best_val_accuracy") is not None
        best = selected and os.path.isdir(os.path.join(workdir, "best"))
        manifest = export.read_manifest(export.export_run(workdir, best=best))
        # the host reads the metrics at each log and waits there for the (asynchronously
        # dispatched) steps, so the training loop's time is train_s + log_s
        timing = result.get("timing") or {}
        train_s = timing.get("train_s", 0.0) + timing.get("log_s", 0.0)
        row.update(test_accuracy=result["test_accuracy"], step=result["step"],
                   seconds=result.get("seconds"), select_best=selected,
                   test_loss=result.get("final_test_loss"), val_loss=result.get("final_val_loss"),
                   step_s=train_s / result["step"] if train_s and result["step"] else None,
                   **size_of(manifest))
    except Interrupted:
        raise
    except UserError as e:
        row["error"] = " ".join(str(e).split())
    except Exception as e:  # noqa: BLE001 - a bug in one method must not end the comparison
        if isinstance(e, ModuleNotFoundError) and (e.name or "").startswith("jaxquant."):
            row["error"] = (f"method {row['method']!r} is registered but {e.name} is not in this "
                            f"checkout (not implemented yet)")
        else:
            row["error"] = (f"{type(e).__name__}: {' '.join(str(e).split())[:300]} "
                            f"(traceback in {log_path})")
        tee.file.write(traceback.format_exc())
    finally:
        tee.close()
    return row


# --------------------------------------------------------------------- the comparison


def _describe(config, budget: Budget) -> str:
    c = config
    epochs = f"{budget.epochs:g} epochs of {budget.steps_per_epoch}" if budget.steps_per_epoch else ""
    return (f"dataset `{c.dataset.name}`, model `{c.model.name}`, {budget.total_steps} steps "
            f"({epochs}) at batch {c.train.batch_size}, {c.optimizer.name} lr {c.optimizer.lr} "
            f"{c.schedule.kind}, quantized layers {list(c.quant.include)} minus "
            f"{list(c.quant.exclude)}")


def _machine() -> str:
    import platform
    import jax
    dev = jax.devices()[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{len(jax.devices())} x {dev.device_kind} ({dev.platform}), {os.cpu_count()} CPU "
            f"cores, load average {load:.1f} at the end, {platform.python_implementation()} "
            f"{platform.python_version()}, jax {jax.__version__}")


def _settings(r: dict) -> str:
    """A row's method and its non-default keys, as one line."""
    return " ".join([r["method"]] + [f"{k}={v}" for k, v in sorted(r["method_config"].items())
                                     if k != "name"])


def _notes(r: dict, *extra: str) -> str:
    notes = ["test at best val."] if r.get("select_best") else []
    if r["quantized_fraction"] < 1 and r["bits"] != "32":
        notes.append(f"{100 * r['quantized_fraction']:.1f}% of params quantized")
    return "; ".join(notes + [e for e in extra if e])


def _fmt_row(r: dict) -> str:
    if r["error"]:
        return f"| {r['label']} | `{_settings(r)}` | error | | | | | {r['error']} |"
    acc = f"{100 * r['test_accuracy']:.2f}"
    secs = f"{r['seconds']:.0f}" if r.get("seconds") is not None else ""
    return (f"| {r['label']} | `{_settings(r)}` | {acc} | {r['bits']} | {r['bytes']:,} | "
            f"{r['compression']:.1f}x | {secs} | {_notes(r)} |")


_EXPORT_NOTE = ("Export bytes: packed payload + codebooks of every tensor, BN statistics "
                "included (`jaxquant.export`)")


def _write_markdown(path: str, header: str, columns: list[str], body: list[str],
                    footer: str) -> str:
    """A comparison.md: header, one table (`columns`, `body` rows), footer."""
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
             *body, "", footer]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_table(rows: list[dict], path: str, header: str) -> str:
    """comparison.md: one row per method, error rows included."""
    return _write_markdown(
        path, header, ["method", "config.method", "test acc. % (hard-quantized)", "weight bits",
                       "export bytes", "compression vs fp32", "train time (s)", "notes"],
        [_fmt_row(r) for r in rows],
        f"{_EXPORT_NOTE}; train time: wall-clock of the training loop (compilation and "
        f"evaluations included; the last session's only, for a resumed run).")


_MEAN_KEYS = ("test_loss", "val_loss", "step_s")


def summarize(runs: list[dict]) -> list[dict]:
    """One row per method label from its runs (one per seed), in first-seen order.

    test_accuracy: mean over the seeds that finished; std: sample standard deviation
    (ddof 1; None for one seed); n: the number of finished seeds; accuracies / seeds:
    the per-seed values. test_loss, val_loss (final network, mean per prediction) and
    step_s (seconds per train step) get their mean and `<key>_std` the same way. Size
    columns come from the first finished run (a method's export has the same layout at
    every seed); `error` lists the seeds that failed.
    """
    import numpy as np
    rows: dict[str, dict] = {}
    for r in runs:
        rows.setdefault(r["label"], dict(label=r["label"], method=r["method"],
                                         method_config=r["method_config"], runs=[]))["runs"].append(r)
    out = []
    for row in rows.values():
        done = [r for r in row.pop("runs") if not r["error"]]
        failed = [r for r in runs if r["label"] == row["label"] and r["error"]]
        accs = [r["test_accuracy"] for r in done]
        row.update(seeds=[r.get("seed") for r in done], accuracies=accs, n=len(accs),
                   error="; ".join(f"seed {r.get('seed')}: {r['error']}" for r in failed) or None)
        if accs:
            first = done[0]
            row.update(test_accuracy=float(np.mean(accs)),
                       std=float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                       seconds=float(np.mean([r["seconds"] or 0.0 for r in done])),
                       select_best=first.get("select_best"), workdirs=[r["workdir"] for r in done],
                       **{k: first[k] for k in ("bits", "bytes", "float32_bytes", "compression",
                                               "quantized_fraction")})
            for key in _MEAN_KEYS:  # mean and sample std where every finished seed has one
                values = [r.get(key) for r in done]
                if all(v is not None for v in values):
                    row[key] = float(np.mean(values))
                    row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out.append(row)
    return out


def _fmt_seed_row(r: dict) -> str:
    if not r["n"]:
        return f"| {r['label']} | `{_settings(r)}` | error | | | | | | {r['error']} |"
    spread = f" ± {100 * r['std']:.2f}" if r["std"] is not None else ""
    seeds = ", ".join(f"{100 * a:.2f}" for a in r["accuracies"])
    return (f"| {r['label']} | `{_settings(r)}` | {100 * r['test_accuracy']:.2f}{spread} | "
            f"{r['n']} | {seeds} | {r['bits']} | {r['bytes']:,} | {r['compression']:.1f}x | "
            f"{_notes(r, r['error'])} |")


def _bits(r: dict, key: str) -> str:
    """Mean ± std of a loss in nats per byte as bits per byte, or ''."""
    if r.get(key) is None:
        return ""
    spread = f" ± {r[key + '_std'] / math.log(2):.3f}" if r.get(key + "_std") is not None else ""
    return f"{r[key] / math.log(2):.3f}{spread}"


def _text_cells(r: dict, fp_step: float | None) -> str:
    """The language-model columns of a row: validation and test bits per byte, step time."""
    step = f"{1e3 * r['step_s']:.0f}" if r.get("step_s") else ""
    ratio = f"{r['step_s'] / fp_step:.2f}" if r.get("step_s") and fp_step else ""
    return f"{_bits(r, 'val_loss')} | {_bits(r, 'test_loss')} | {step} | {ratio} | "


def write_seed_table(rows: list[dict], path: str, header: str, text: bool = False) -> str:
    """comparison.md of a multi-seed comparison: mean ± std (n) and every seed's accuracy;
    with `text` (a byte-level language model), validation and test bits per byte (mean ±
    std), the train step time and its ratio to the `fp` row's."""
    columns = ["method", "config.method", "test acc. % mean ± std", "n", "per seed",
               "weight bits", "export bytes", "compression vs fp32", "notes"]
    body = [_fmt_seed_row(r) for r in rows]
    footer = ""
    if text:
        fp_step = next((r.get("step_s") for r in rows if r["label"] == "fp"), None)
        columns[5:5] = ["val bits/byte", "test bits/byte", "step (ms)", "step / fp step"]
        body = [line if not r["n"] else line.replace(f" | {r['bits']} | ",
                                                     f" | {_text_cells(r, fp_step)}{r['bits']} | ", 1)
                for r, line in zip(rows, body)]
        body = [line if r["n"] else line.replace(" | error | ", " | error | | | | | ", 1)
                for r, line in zip(rows, body)]
        footer = ("Bits per byte = mean next-byte cross-entropy of the hard-quantized network "
                  "(nats) / ln 2 at the last step, on the fixed windows of the split; test acc. = "
                  "next-byte accuracy; step = seconds of the training loop (the trainer's train_s + "
                  "log_s: compilation, evaluation and checkpoints excluded) / steps. ")
    return _write_markdown(
        path, header, columns, body,
        footer + f"Mean and sample standard deviation (ddof 1) over the n seeds that finished "
        f"(`config.seed` = each seed: initialisation, data order and augmentation change); "
        f"accuracy of the hard-quantized network. {_EXPORT_NOTE}.")


def _curve(workdir: str, key: str) -> dict[int, float]:
    """step -> a metric of a run's records: test accuracy in %, or a loss (`key` ending in
    _loss) in bits (nats / ln 2: bits per byte for a byte-level LM)."""
    from jaxquant.metrics import read_metrics
    scale = 1 / math.log(2) if key.endswith("_loss") else 100.0
    return {m["step"]: scale * m[key] for m in read_metrics(workdir) if key in m}


def _draw(ax, rows: list[dict], key: str) -> None:
    """One curve of `key` per row (mean over its seeds at the steps every seed recorded,
    ±1 std band; a single step as a point with an error bar)."""
    import numpy as np
    for r in rows:
        curves = [_curve(w, key) for w in r.get("workdirs", [r["workdir"]] if "workdir" in r else [])]
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        if not steps:
            continue
        ys = np.array([[c[s] for s in steps] for c in curves])
        mean = ys.mean(axis=0)
        std = ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
        label = r["label"] + (f" (n={len(curves)})" if len(curves) > 1 else "")
        if len(steps) == 1:
            ax.errorbar(steps, mean, yerr=std, fmt="o", capsize=4, label=label)
            continue
        line, = ax.plot(steps, mean, label=label, marker="." if len(steps) < 30 else None)
        if len(curves) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def plot(rows: list[dict], path: str, title: str, text: bool = False) -> str:
    """comparison.png: test accuracy of the hard-quantized network vs step, one curve per
    method (mean over seeds, ±1 std band). For a language model (`text`) two panels:
    the training loss (the training forward pass: soft / straight-through weights) and the
    test loss of the hard-quantized network, both in bits per byte."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ([("train_loss", "train bits per byte (training forward pass)"),
               ("test_loss", "test bits per byte (hard-quantized)")] if text
              else [("test_accuracy", "test accuracy % (hard-quantized)")])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        _draw(ax, rows, key)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(base, methods: str | list[Spec], workdir: str, *, seeds: list[int] | None = None,
            overwrite: bool = False, echo: Callable[[str], None] = print,
            command: str = "") -> list[dict]:
    """Train every method of `methods` on `base`'s data/model/budget in `workdir/<label>` and
    write comparison.md / .json / .png there; returns the rows.

    With `seeds`, every method trains once per seed in `workdir/<label>/seed<k>` (seed by
    seed) and each row holds the mean ± std over its seeds (`summarize`)."""
    specs = parse_specs(methods) if isinstance(methods, str) else list(methods)
    budget = budget_of(base)
    plan = [(spec, seed, method_config(base, spec, budget, workdir, seed))
            for seed in (seeds if seeds is not None else [None]) for spec in specs]
    os.makedirs(workdir, exist_ok=True)
    runs, t0 = [], time.time()
    for i, (spec, seed, config) in enumerate(plan):
        name = spec.label if seed is None else f"{spec.label} seed {seed}"
        where = run_dir(workdir, spec.label, seed)
        echo(f"[{i + 1}/{len(plan)}] {name}: config.method={config.method.to_dict()} -> {where}")
        row = run_method(spec, config, where, overwrite=overwrite, echo=echo,
                         tag=f"[{i + 1}/{len(plan)}] {name}:")
        row["seed"] = seed
        runs.append(row)
        echo(f"[{i + 1}/{len(plan)}] {name}: " + (
            f"ERROR {row['error']}" if row["error"] else
            f"test accuracy {100 * row['test_accuracy']:.2f}%, {row['bits']}-bit, "
            f"{row['bytes']:,} bytes ({row['compression']:.1f}x)"))
    seed_text = "" if seeds is None else f"; seeds {', '.join(map(str, seeds))}"
    header = "\n".join([
        f"# Method comparison: {base.dataset.name} / {base.model.name}", "",
        f"Same data, model and budget for every method: {_describe(base, budget)}{seed_text}.",
        f"Machine: {_machine()}; total {time.time() - t0:.0f} s.",
        *([f"Command: `{command}`"] if command else [])])
    rows = runs if seeds is None else summarize(runs)
    from jaxquant.data import text as text_data
    text = text_data.is_text(base.dataset.name)
    if seeds is None:
        write_table(rows, os.path.join(workdir, "comparison.md"), header)
    else:
        write_seed_table(rows, os.path.join(workdir, "comparison.md"), header, text=text)
    with open(os.path.join(workdir, "comparison.json"), "w") as f:
        json.dump(dict(base=json.loads(base.to_json_best_effort()), budget=budget._asdict(),
                       command=command, seeds=seeds, rows=rows, runs=runs), f, indent=1, default=str)
    plot(rows, os.path.join(workdir, "comparison.png"),
         f"{base.dataset.name} / {base.model.name}, {budget.total_steps} steps{seed_text}", text=text)
    echo(f"wrote {os.path.join(workdir, 'comparison.md')} and comparison.png")
    return rows


# --------------------------------------------------------------------- CLI


def _cli():
    from absl import app, flags, logging
    from ml_collections import config_flags

    from jaxquant import cli_config
    from jaxquant.export import fail

    config_flag = cli_config.define_config_flag(
        "Base experiment config (dataset, model, optimizer, budget); override fields with "
        "--config.section.key=value (any key of its model, set by the file or not).")
    methods_flag = flags.DEFINE_string(
        "methods", "fp,bc,bwn,dorefa", "Comma-separated presets or method names, each "
        "optionally with :key=value overrides. Presets: " + ", ".join(sorted(PRESETS)) + ".")
    workdir_flag = flags.DEFINE_string("workdir", None, "Directory holding one run per method "
                                       "and comparison.md/.png.")
    overwrite_flag = flags.DEFINE_bool("overwrite", False, "Retrain every method from scratch "
                                       "(default: resume / reuse finished runs).")
    seeds_flag = flags.DEFINE_string(
        "seeds", "", "Train every method once per seed and report mean ± std: a count "
        "(--seeds=3: seeds 0, 1, 2) or a list (--seeds=0,1,2). Default: one run at config.seed.")
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}; pass --config=... --methods=... --workdir=...")
        logging.set_verbosity(logging.ERROR)  # orbax warns on every read-only restore
        from jaxquant.compile_cache import enable_compilation_cache
        enable_compilation_cache(None)  # as jaxquant.main: seeds of a method compile once
        path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
        if not os.path.isfile(path):
            fail(f"config file {path!r} not found; pass --config=configs/<experiment>.py.")
        try:
            config = config_flag.value
        except (OSError, AttributeError, KeyError, TypeError, ValueError, SyntaxError) as e:
            fail(f"cannot load the config: {' '.join(str(e).split())}")
        command = "python -m jaxquant.compare " + " ".join(
            a if " " not in a else repr(a) for a in sys.argv[1:])
        try:
            compare(config, parse_specs(methods_flag.value), workdir_flag.value,
                    seeds=parse_seeds(seeds_flag.value), overwrite=overwrite_flag.value,
                    command=command,
                    echo=lambda s: print(s, flush=True))
        except UserError as e:
            fail(" ".join(str(e).split()))
        except Interrupted as e:  # preemption: like jaxquant.main, not an error
            print(f"stopped: {e}", flush=True)

    app.run(main, flags_parser=lambda argv: cli_config.parse_flags(argv, fail))


if __name__ == "__main__":
    _cli()
