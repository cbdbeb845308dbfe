"""Training-step cost of every method vs full precision: throughput, ratio, compile time, memory.

For each model (ResNet-20 and ResNet-18 at CIFAR shapes 32x32x3, an MLP on 28x28x1, and
PD-QAT's switchable-precision ResNet-20q at width x1)
and each method (a `jaxquant.compare` preset or registered method name), the real
train step (`jaxquant.train.build_experiment` + `make_train_step`, synthetic
in-memory data) is compiled and timed. Methods and full precision are timed in
interleaved rounds in one process, and each method's ratio is the median over
rounds of its step time over the fp step time of the same round, so a noisy
machine affects both alike. With PyTorch installed, a plain PyTorch ResNet-20
step of the same model and batch (bench/torch_resnet.py) joins the ResNet-20 and
ResNet-18 rounds.

    python bench/step_time.py --out bench/results                # CPU-sized defaults
    python bench/step_time.py --out bench/results --batch 128 --rounds 20 --steps 20   # GPU

Writes <out>/step_time.json and <out>/step_time.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import threads  # noqa: E402

DEFAULT_METHODS = ("fp,ste,bc,bwn,dorefa,dorefa_w2,md_tanh,md_tanh_s,md_softmax,md_softmax_s,"
                   "gd_tanh,pmf,proxquant_binary,proxquant_ternary,metaquant,pdqat,ldnq")


TORCH_MODELS = ("resnet20", "resnet18")  # bench/torch_resnet.py MODELS (torch imported lazily)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results")
    p.add_argument("--models", default="resnet20,resnet18,mlp")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="compare presets / method names; fp is always included")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=3, help="steps per timed block")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per library (0 = library default); see bench/threads.py")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--name", default="step_time", help="output file stem")
    return p.parse_args(argv)


def _torch_step(model, batch, n_threads):
    try:
        import torch
    except ImportError:
        return None, "PyTorch not installed"
    if n_threads:
        torch.set_num_threads(n_threads)
    from torch_resnet import TorchStep
    return TorchStep(batch, model), f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def bench_model(model, specs, args, log=print):
    """Rows for one model: one per method (skipped ones with a note), plus torch."""
    import common
    fields, shape, classes, augment = common.MODELS[model]
    ds = common.synthetic_dataset(shape, classes, max(args.batch, 256), augment)
    steps, notes = {}, {}
    for spec in specs:
        log(f"  {model} / {spec.label}: compiling")
        step, why = common.try_build(common.bench_config(model, spec, args.batch), ds)
        if step is None:
            notes[spec.label] = why
            log(f"  {model} / {spec.label}: {why}")
        else:
            steps[spec.label] = step
    timers = {label: s.run for label, s in steps.items()}
    torch_note = None
    has_torch = model in TORCH_MODELS
    if has_torch and not args.no_torch:
        tstep, torch_note = _torch_step(model, args.batch, args.threads)
        if tstep is not None:
            timers["torch"] = tstep.run
    log(f"  {model}: timing {len(timers)} steps x {args.rounds} rounds x {args.steps} steps")
    times = common.interleaved(timers, args.rounds, args.steps)
    rows = common.step_rows(model, specs, steps, times, notes, args.batch, torch_note)
    if "torch" not in times and has_torch and torch_note:
        rows.append(dict(model=model, method="torch", note=f"skipped: {torch_note}"))
    return rows


def _mb(b):
    return "" if b is None else f"{b / 2**20:.1f}"


def markdown(rows, machine, args) -> str:
    import common
    lines = ["# Training step cost vs full precision", "",
             f"Machine: {common.machine_line(machine)}. Threads per library: "
             f"{args.threads or 'default'}. Batch {args.batch}; {args.rounds} interleaved rounds of "
             f"{args.steps} steps per method; ratio = median over rounds of (method step time / "
             f"fp step time in the same round). Synthetic data, the trainer's real step "
             f"(augmentation + forward + loss + update). On a shared CPU the absolute times are "
             f"noisy; the ratios are the comparable numbers.", "",
             "Command: `python bench/step_time.py " + " ".join(sys.argv[1:]) + "`", "",
             "| model | method | step (ms) | images/s | ratio vs fp | compile (s) | step memory (MiB, XLA) | GFLOP/step | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "step_ms" not in r:
            lines.append(f"| {r['model']} | {r['method']} | | | | | | | {r['note']} |")
            continue
        note = r.get("note") or ""
        if "jax_fp_over_torch" in r:
            note += f"; JAX fp / torch step time = {r['jax_fp_over_torch']:.2f}"
        comp = f"{r['compile_s']:.1f}" if "compile_s" in r else ""
        gf = f"{r['gflops']:.2f}" if r.get("gflops") else ""
        lines.append(f"| {r['model']} | {r['method']} | {r['step_ms']:.1f} | {r['images_per_s']:.0f} | "
                     f"{r['ratio_vs_fp']:.2f} | {comp} | {_mb(r.get('step_bytes'))} | {gf} | {note} |")
    lines += ["", f"Peak device memory: {_mb(machine['device_peak_bytes']) or 'n/a (CPU)'} MiB; "
              f"process max RSS: {_mb(machine['max_rss_bytes'])} MiB. Step memory (XLA) = "
              f"arguments + outputs + temporaries - donated aliases of the compiled step."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse(argv)
    threads.apply(args.threads)
    import common
    from jaxquant import compare
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    specs = compare.parse_specs(args.methods)
    if "fp" not in [s.label for s in specs]:
        specs = compare.parse_specs("fp") + specs
    rows = []
    for model in args.models.split(","):
        print(f"{model}:", flush=True)
        rows += bench_model(model, specs, args, log=lambda s: print(s, flush=True))
        machine = common.machine()  # written after each model: a long run keeps what it has
        common.write(args.out, args.name, dict(args=vars(args), machine=machine, rows=rows),
                     markdown(rows, machine, args))


if __name__ == "__main__":
    main()
