"""Data-parallel scaling: the real train step's throughput vs the number of devices.

Each device count runs in its own subprocess (JAX fixes its devices at start-up):
on CPU N host-platform devices via XLA_FLAGS=--xla_force_host_platform_device_count=N,
on GPU the first N GPUs via CUDA_VISIBLE_DEVICES. The step is the trainer's own
(batch sharded over a 1-D 'data' mesh, state replicated, XLA's gradient all-reduce),
timed for full precision and each method in interleaved rounds. Strong scaling
(default): the global batch is fixed; `--weak`: the per-device batch is fixed.

    python bench/scaling.py --out bench/results                     # CPU, 1/2/4/8 devices
    python bench/scaling.py --out bench/results --devices 1,2,4,8 --batch 256 --weak  # GPUs

On a CPU the "devices" share the same cores, so this measures the sharding
overhead of the step, not a speedup; the note in the table says how many cores
there were.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import threads  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results")
    p.add_argument("--models", default="resnet20,mlp")
    p.add_argument("--methods", default="fp,bc,dorefa")
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--batch", type=int, default=32, help="global batch (per-device with --weak)")
    p.add_argument("--weak", action="store_true", help="fix the per-device batch instead")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads per device (0 = default)")
    p.add_argument("--platform", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--name", default="scaling")
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(args):
    """Runs inside the subprocess with N devices: one JSON line per (model, method)."""
    import common
    import jax
    from absl import logging
    from jaxquant import compare
    logging.set_verbosity(logging.ERROR)
    n = jax.device_count()
    batch = args.batch * n if args.weak else args.batch
    specs = compare.parse_specs(args.methods)
    for model in args.models.split(","):
        fields, shape, classes, augment = common.MODELS[model]
        ds = common.synthetic_dataset(shape, classes, max(batch, 256), augment)
        steps, notes = {}, {}
        for spec in specs:
            step, why = common.try_build(common.bench_config(model, spec, batch), ds)
            if step is None:
                notes[spec.label] = why
            else:
                steps[spec.label] = step
        times = common.interleaved({k: s.run for k, s in steps.items()}, args.rounds, args.steps)
        for spec in specs:
            row = dict(model=model, method=spec.label, devices=n, batch=batch)
            if spec.label in notes:
                row["note"] = notes[spec.label]
            else:
                med = statistics.median(times[spec.label])
                row.update(step_ms=1e3 * med, images_per_s=batch / med,
                           compile_s=steps[spec.label].compile_seconds)
            print("ROW " + json.dumps(row), flush=True)


def _platform(requested: str) -> str:
    if requested != "auto":
        return requested
    out = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                         capture_output=True, text=True)
    return "gpu" if out.stdout.strip() in ("gpu", "cuda", "rocm") else "cpu"


def run_children(args, platform: str) -> list[dict]:
    rows = []
    for n in [int(d) for d in args.devices.split(",")]:
        env = dict(os.environ)
        if platform == "cpu":
            env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=threads.xla_flags(args.threads, n))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
        cmd = [sys.executable, os.path.join(HERE, "scaling.py"), "--child", str(n),
               "--models", args.models, "--methods", args.methods, "--batch", str(args.batch),
               "--rounds", str(args.rounds), "--steps", str(args.steps)] + (
                   ["--weak"] if args.weak else [])
        print(f"{n} device(s): running", flush=True)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        got = [json.loads(line[4:]) for line in out.stdout.splitlines() if line.startswith("ROW ")]
        if out.returncode or not got:
            rows.append(dict(devices=n, note=f"failed (exit {out.returncode}): "
                             f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}"))
            continue
        for r in got:
            print(f"  {r}", flush=True)
        rows += got
    base = {(r["model"], r["method"]): r for r in rows if r.get("devices") == 1 and "step_ms" in r}
    for r in rows:
        b = base.get((r.get("model"), r.get("method")))
        if b and "images_per_s" in r:
            r["speedup"] = r["images_per_s"] / b["images_per_s"]
            r["efficiency"] = r["speedup"] / r["devices"]
    return rows


def markdown(rows, args, platform, machine_line) -> str:
    kind = (f"weak scaling, {args.batch} images per device" if args.weak
            else f"strong scaling, global batch {args.batch}")
    cpu_note = (f" The CPU devices are XLA host-platform devices sharing {os.cpu_count()} cores "
                f"({args.threads or 'default'} thread(s) each), so this measures the overhead of "
                f"sharding the step, not a speedup." if platform == "cpu" else "")
    lines = ["# Data-parallel scaling of the train step", "",
             f"{kind}; {args.rounds} interleaved rounds of {args.steps} steps; one subprocess per "
             f"device count ({'XLA_FLAGS=--xla_force_host_platform_device_count=N' if platform == 'cpu' else 'CUDA_VISIBLE_DEVICES'}).{cpu_note}",
             f"Machine: {machine_line}.", "",
             "Command: `python bench/scaling.py " + " ".join(sys.argv[1:]) + "`", "",
             "| model | method | devices | batch | step (ms) | images/s | speedup vs 1 | efficiency | compile (s) | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.get("model", ""), r.get("method", ""), r["devices"])):
        if "step_ms" not in r:
            lines.append(f"| {r.get('model', '')} | {r.get('method', '')} | {r['devices']} | | | | | | | "
                         f"{r.get('note', '')} |")
            continue
        sp = f"{r['speedup']:.2f}" if "speedup" in r else ""
        ef = f"{r['efficiency']:.2f}" if "efficiency" in r else ""
        lines.append(f"| {r['model']} | {r['method']} | {r['devices']} | {r['batch']} | "
                     f"{r['step_ms']:.1f} | {r['images_per_s']:.0f} | {sp} | {ef} | "
                     f"{r['compile_s']:.1f} | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse(argv)
    if args.child:
        child(args)
        return
    platform = _platform(args.platform)
    rows = run_children(args, platform)
    threads.apply(args.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu" if platform == "cpu" else "")
    import common
    machine = common.machine()
    common.write(args.out, args.name, dict(args=vars(args), platform=platform, machine=machine,
                                           rows=rows),
                 markdown(rows, args, platform, common.machine_line(machine)))


if __name__ == "__main__":
    main()
