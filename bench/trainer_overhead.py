"""jaxquant's trainer against a bare jitted JAX/Flax loop (and plain PyTorch) doing the same job.

Jobs (both BinaryConnect: sign(w) forward on every kernel, hard-tanh-gated STE; Adam,
cosine-decayed lr 1e-2, batch 128):
- `mlp`: the MLP 784-256-256-10 with BN on Fashion-MNIST for `--epochs` epochs
  (the issue's job: 15), per-epoch evaluation and checkpoints in jaxquant (its defaults);
- `resnet20`: the CIFAR ResNet-20 for `--r20-steps` steps on a CIFAR-10 image folder
  (`--cifar`, default /work/data/cifar10-5k; random 32x32x3 PNGs if it is missing),
  pad-4 crop + flip, evaluated once at the end.

Programs, each a fresh process (whole-process wall and CPU seconds measured from here):
- `jaxquant`: `python -m jaxquant.main --config configs/bc_fashion_mnist.py ...` (the real
  CLI and trainer; the persistent compilation cache off, so every round compiles);
- `bare`: bench/bare_loop.py --loop jax, a ~100-line jitted Flax loop with one dispatch per step;
- `torch`: bench/bare_loop.py --loop torch (if PyTorch is installed), its default threads
  with OMP_WAIT_POLICY=PASSIVE (on a shared machine spinning OpenMP threads made a
  15-epoch run take many minutes); `torch_1thread`: the same with one thread (faster
  than two on a loaded machine). jaxquant / PyTorch is reported against both.
The programs run in alternating rounds (the order rotated by one per round) and each
ratio is the median over rounds of (program / bare loop of the same round), so a noisy
machine affects both alike. Per step = in-process training seconds / steps (jaxquant:
result.json's timing.train_s; bare: the timed loop after compilation). jaxquant's
share of wall time per part comes from its result.json timing.

The start-up part runs the jaxquant CLI for one step twice with one fresh compilation
cache directory: the first run compiles, the second reads the cache.

    python bench/trainer_overhead.py --out bench/results                     # the issue's job
    python bench/trainer_overhead.py --jobs mlp --epochs 2 --rounds 1 --name quick
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CIFAR_DEFAULT = "/work/data/cifar10-5k"
PARTS = ("setup_s", "data_s", "compile_s", "train_s", "log_s", "eval_s", "checkpoint_s", "final_s")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--name", default="trainer_overhead", help="output file stem")
    p.add_argument("--jobs", default="mlp,resnet20")
    p.add_argument("--epochs", type=int, default=15, help="MLP epochs")
    p.add_argument("--r20-steps", type=int, default=10, help="ResNet-20 steps")
    p.add_argument("--mlp-dataset", default="fashion_mnist", help="the MLP job's dataset (digits: a quick run)")
    p.add_argument("--cifar", default=CIFAR_DEFAULT, help="CIFAR-10 image folder (train/, test/)")
    p.add_argument("--rounds", type=int, default=2, help="0: the start-up runs only")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up runs")
    p.add_argument("--workdir", default="", help="scratch directory (default: a temporary one)")
    return p.parse_args(argv)


def random_image_folder(root: str, train: int = 60, test: int = 20, classes: int = 10,
                        ext: str = "png") -> str:
    """A CIFAR-shaped image folder of random images (when no CIFAR-10 is at hand)."""
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(0)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            os.makedirs(os.path.join(root, split, f"c{c}"), exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    os.path.join(root, split, f"c{c}", f"{i}.{ext}"))
    return root


def job_spec(job: str, args, scratch: str) -> dict:
    """The dataset name and jaxquant overrides of a job, and the length for the bare loops."""
    common = ["--config.dataset.validation=0", "--config.optimizer.lr=1e-2",
              "--config.schedule.kind=cosine", "--config.train.select_best=False",
              "--config.train.batch_size=128"]
    if job == "mlp":
        return dict(dataset=args.mlp_dataset, model="mlp", epochs=args.epochs, steps=0,
                    overrides=common + ["--config.model.name=mlp", f"--config.dataset.name={args.mlp_dataset}",
                                        f"--config.train.epochs={args.epochs}"])
    cifar = args.cifar if os.path.isdir(os.path.join(args.cifar, "train")) else \
        random_image_folder(os.path.join(scratch, "random_cifar"))
    return dict(dataset=f"image_folder:{cifar}", model="resnet20", epochs=0, steps=args.r20_steps,
                overrides=common + ["--config.model.name=resnet20", f"--config.train.steps={args.r20_steps}",
                                    f"--config.dataset.name=image_folder:{cifar}"])


def write_arrays(dataset: str, directory: str) -> dict:
    """Decode the dataset once through jaxquant.data (filling its cache, which jaxquant's
    runs then read) and save the arrays the bare loops read."""
    import ml_collections
    import numpy as np
    sys.path.insert(0, REPO)
    from jaxquant import data
    ds = data.load(ml_collections.ConfigDict(dict(name=dataset, data_dir="", validation=0, augment="")))
    os.makedirs(directory, exist_ok=True)
    arrays = dict(train_x=ds.train.images, train_y=ds.train.labels, test_x=ds.test.images,
                  test_y=ds.test.labels, mean=np.asarray(ds.mean, np.float32),
                  std=np.asarray(ds.std, np.float32))
    for k, v in arrays.items():
        np.save(os.path.join(directory, f"{k}.npy"), v)
    return dict(train=int(len(arrays["train_y"])), test=int(len(arrays["test_y"])))


def timed(cmd, env=None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the child, completed process) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, cpu, out


def env_for(cache: str = "off") -> dict:
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                JAXQUANT_COMPILATION_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3")


def run_jaxquant(spec, workdir, extra=(), cache="off") -> dict:
    cmd = [sys.executable, "-m", "jaxquant.main", "--config", "configs/bc_fashion_mnist.py",
           "--workdir", workdir, "--overwrite", *spec["overrides"], *extra]
    wall, cpu, _ = timed(cmd, env_for(cache))
    with open(os.path.join(workdir, "result.json")) as f:
        result = json.load(f)
    t = result["timing"]
    return dict(wall_s=wall, cpu_s=cpu, test_accuracy=result["test_accuracy"], steps=result["step"],
                train_s=t["train_s"], compile_s=t["compile_s"], timing=t)


def run_bare(loop, spec, data_dir, out_json, threads=0) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "bare_loop.py"), "--loop", loop, "--model", spec["model"],
           "--data", data_dir, "--epochs", str(spec["epochs"]), "--steps", str(spec["steps"]),
           "--threads", str(threads), "--json", out_json]
    env = env_for()
    if loop == "torch":  # idle OpenMP threads sleep instead of spinning: on a machine shared
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # with other jobs, spinning costs PyTorch minutes
    wall, cpu, _ = timed(cmd, env)
    with open(out_json) as f:
        r = json.load(f)
    return dict(wall_s=wall, cpu_s=cpu, **{k: r[k] for k in ("test_accuracy", "steps", "train_s",
                                                             "compile_s", "import_s", "eval_s")})


def bench_job(job, args, scratch, programs, log=print) -> dict:
    spec = job_spec(job, args, scratch)
    data_dir = os.path.join(scratch, f"{job}_arrays")
    sizes = write_arrays(spec["dataset"], data_dir)
    runs = {p: [] for p in programs}
    for r in range(args.rounds):
        order = programs[r % len(programs):] + programs[:r % len(programs)]
        for prog in order:
            log(f"  {job} round {r + 1}/{args.rounds}: {prog}")
            if prog == "jaxquant":
                res = run_jaxquant(spec, os.path.join(scratch, f"{job}_jaxquant"))
            else:
                res = run_bare("jax" if prog == "bare" else "torch", spec, data_dir,
                               os.path.join(scratch, f"{job}_{prog}.json"),
                               threads=1 if prog == "torch_1thread" else 0)
            runs[prog].append(res)
            log(f"    wall {res['wall_s']:.1f} s, cpu {res['cpu_s']:.1f} s, "
                f"train {res['train_s']:.1f} s, test acc {res['test_accuracy']:.4f}")
    return dict(job=job, spec=spec, data=sizes, runs=runs, summary=summarize(runs))


def _ratio(runs, prog, key, ref="bare"):
    return statistics.median(a[key] / b[key] for a, b in zip(runs[prog], runs[ref]))


def summarize(runs) -> dict:
    out = {}
    for prog, rs in runs.items():
        per_step = [r["train_s"] / max(r["steps"], 1) for r in rs]
        row = dict(wall_s=statistics.median(r["wall_s"] for r in rs),
                   cpu_s=statistics.median(r["cpu_s"] for r in rs),
                   step_ms=1e3 * statistics.median(per_step),
                   compile_s=statistics.median(r["compile_s"] for r in rs),
                   test_accuracy=statistics.median(r["test_accuracy"] for r in rs),
                   steps=rs[0]["steps"])
        for key, name in (("wall_s", "wall_ratio"), ("cpu_s", "cpu_ratio")):
            row[name] = _ratio(runs, prog, key)
        row["step_ratio"] = statistics.median(
            (a["train_s"] / max(a["steps"], 1)) / (b["train_s"] / max(b["steps"], 1))
            for a, b in zip(rs, runs["bare"]))
        for ref in ("torch", "torch_1thread"):
            if ref in runs and not prog.startswith("torch"):
                row[f"wall_vs_{ref}"] = _ratio(runs, prog, "wall_s", ref=ref)
                row[f"cpu_vs_{ref}"] = _ratio(runs, prog, "cpu_s", ref=ref)
        if prog == "jaxquant":
            shares = {}
            for part in PARTS:
                shares[part] = statistics.median(r["timing"].get(part, 0.0) / r["wall_s"] for r in rs)
            shares["imports_and_rest"] = max(0.0, 1.0 - sum(shares.values()))
            row["share_of_wall"] = shares
        out[prog] = row
    return out


def startup(args, scratch, log=print) -> list[dict]:
    """The jaxquant CLI for one step, twice, with one fresh compilation cache directory."""
    rows = []
    for job in args.jobs.split(","):
        spec = job_spec(job, args, scratch)
        spec = dict(spec, overrides=[o for o in spec["overrides"] if "train.epochs" not in o
                                     and "train.steps" not in o] + ["--config.train.steps=1"])
        cache = tempfile.mkdtemp(prefix="jaxcache_", dir=scratch)
        for run in ("first (empty cache)", "second (cache filled)"):
            log(f"  start-up {job}: {run}")
            res = run_jaxquant(spec, os.path.join(scratch, f"{job}_startup"), cache=cache)
            t = res["timing"]
            rows.append(dict(job=job, run=run, wall_s=res["wall_s"], cpu_s=res["cpu_s"],
                             compile_s=res["compile_s"], first_step_s=t["first_step_s"],
                             setup_s=t["setup_s"], eval_s=t["eval_s"],
                             # the process's wall less what ran after the first step
                             command_to_first_step_s=res["wall_s"] - (t["total_s"] - t["first_step_s"])))
            log(f"    wall {res['wall_s']:.1f} s, compile {res['compile_s']:.2f} s")
    return rows


def machine() -> dict:
    import platform
    return dict(cpu_count=os.cpu_count(), load_average=list(os.getloadavg()),
                python=platform.python_version(),
                time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def markdown(payload) -> str:
    m = payload["machine"]
    lines = ["# Trainer overhead: jaxquant vs a bare jitted loop (and plain PyTorch)", "",
             f"{m['cpu_count']} CPU cores; load average at the start {m['load_start'][0]:.1f} / "
             f"{m['load_start'][1]:.1f} / {m['load_start'][2]:.1f}, at the end "
             f"{m['load_average'][0]:.1f} / {m['load_average'][1]:.1f} / {m['load_average'][2]:.1f} "
             f"(1/5/15 min); {m['time']}. Each program is a fresh process; "
             f"{payload['args']['rounds']} alternating rounds; medians; ratio = median over rounds "
             f"of (program / bare loop of the same round). CPU = user + system seconds of the process.",
             "", "Command: `python bench/trainer_overhead.py " + " ".join(payload["argv"]) + "`", ""]
    for job in payload["jobs"]:
        spec = job["spec"]
        what = f"{spec['epochs']} epochs" if spec["epochs"] else f"{spec['steps']} steps"
        lines += [f"## {job['job']}: {spec['dataset']}, {job['data']['train']} train / "
                  f"{job['data']['test']} test images, {what}", "",
                  "| program | wall (s) | wall / bare | CPU (s) | CPU / bare | per step (ms) | "
                  "step / bare | compile (s) | test acc. |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for prog, r in job["summary"].items():
            lines.append(f"| {prog} | {r['wall_s']:.1f} | {r['wall_ratio']:.2f} | {r['cpu_s']:.1f} | "
                         f"{r['cpu_ratio']:.2f} | {r['step_ms']:.2f} | {r['step_ratio']:.2f} | "
                         f"{r['compile_s']:.1f} | {100 * r['test_accuracy']:.2f}% |")
        for ref in ("torch", "torch_1thread"):
            jq, bare = job["summary"].get("jaxquant", {}), job["summary"].get("bare", {})
            if f"wall_vs_{ref}" in jq:
                lines += ["", f"jaxquant / {ref} (median of same-round ratios): wall "
                          f"{jq[f'wall_vs_{ref}']:.2f}, CPU {jq[f'cpu_vs_{ref}']:.2f}; bare loop / "
                          f"{ref}: wall {bare[f'wall_vs_{ref}']:.2f}."]
        shares = job["summary"].get("jaxquant", {}).get("share_of_wall")
        if shares:
            lines += ["", "jaxquant's wall time by part (result.json timing; the rest is interpreter "
                      "start and imports): " + ", ".join(
                          f"{k.replace('_s', '')} {100 * v:.0f}%" for k, v in shares.items())]
        lines.append("")
    if payload.get("startup"):
        lines += ["## Start-up: the jaxquant CLI for one step, twice, one compilation cache directory", "",
                  "| job | run | wall (s) | CPU (s) | train step compile (s) | command to first step (s) | "
                  "evaluation incl. its compile (s) |", "|---|---|---|---|---|---|---|"]
        for r in payload["startup"]:
            lines.append(f"| {r['job']} | {r['run']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{r['compile_s']:.2f} | {r['command_to_first_step_s']:.1f} | {r['eval_s']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse(argv)
    scratch = args.workdir or tempfile.mkdtemp(prefix="trainer_overhead_")
    os.makedirs(scratch, exist_ok=True)
    load_start = list(os.getloadavg())
    programs = ["jaxquant", "bare"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401
            programs += ["torch", "torch_1thread"]
        except ImportError:
            print("PyTorch not installed: no torch loop")
    jobs, rows = [], []

    def write():  # after each part: a long run keeps what it has
        payload = dict(args=vars(args), argv=list(sys.argv[1:] if argv is None else argv),
                       machine=dict(machine(), load_start=load_start), jobs=jobs, startup=rows)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
            json.dump(payload, f, indent=1)
        with open(os.path.join(args.out, f"{args.name}.md"), "w") as f:
            f.write(markdown(payload))
        return payload

    for job in (args.jobs.split(",") if args.rounds else []):
        print(f"{job}:", flush=True)
        jobs.append(bench_job(job, args, scratch, programs, log=lambda s: print(s, flush=True)))
        write()
    if not args.no_startup:
        rows += startup(args, scratch, log=lambda s: print(s, flush=True))
    payload = write()
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
