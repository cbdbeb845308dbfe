"""Compile time of every method's train step, where it goes, and start-up with the cache.

Three parts, one JSON + table:
- per method: the trainer's step exactly as a run compiles it (`_Batches.compile(
  make_update(exp))`: batch gather, augmentation, method forward, loss, update,
  non-finite check, device-side metric sums), lowered and compiled ahead of time on
  synthetic in-memory data, against the bare loop's step (bench/bare_loop.py, BinaryConnect)
  of the same model; wall and CPU seconds of `compile()` (CPU = process time of all
  threads: on a shared machine the steadier figure) and the size of the optimized HLO;
- pieces (`--pieces` models, BinaryConnect): the same step built up one part at a time
  (forward + backward on a fixed batch; + optimizer update and non-finite check; + metric
  sums; + in-jit batch gather = the trainer's step) and the evaluation function, so a
  part that makes XLA's compile blow up shows as a jump;
- start-up (`--startup` jobs): the jaxquant CLI for one step, twice with one fresh
  persistent compilation cache (bench/trainer_overhead.py's start-up runs): command to
  first step and train-step compile, first run vs second run.

    python bench/compile_time.py --out bench/results
    python bench/compile_time.py --models mlp --methods fp,bc --pieces mlp --startup "" --name quick
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402  (puts this checkout's jaxquant first on the path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bare_loop  # noqa: E402
import trainer_overhead  # noqa: E402
from jaxquant import compare, data, parallel, train  # noqa: E402
from jaxquant.errors import UserError  # noqa: E402
from jaxquant.methods.base import default_loss  # noqa: E402

BARE_MODELS = ("mlp", "resnet20")  # the models of bench/bare_loop.py
DEFAULT_METHODS = ("fp,ste,bc,bwn,dorefa,md_tanh,md_tanh_s,md_softmax_s,gd_tanh,pmf,"
                   "proxquant_binary,proxquant_ternary,metaquant,ldnq")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--name", default="compile_time")
    p.add_argument("--models", default="mlp,resnet20,resnet18")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="compare presets / method names")
    p.add_argument("--methods-resnet18", default="fp,bc,md_tanh_s,pmf,proxquant_binary",
                   help="the (fewer) methods compiled for ResNet-18")
    p.add_argument("--pieces", default="mlp,resnet20", help="models of the pieces part (mlp, resnet20)")
    p.add_argument("--startup", default="mlp,resnet20", help="jobs of the start-up part ('' none)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--examples", type=int, default=512, help="synthetic training examples")
    p.add_argument("--cifar", default=trainer_overhead.CIFAR_DEFAULT, help="start-up: CIFAR-10 folder")
    p.add_argument("--workdir", default="", help="start-up scratch directory")
    return p.parse_args(argv)


def timed_compile(lower) -> dict:
    """Seconds to lower and to compile (wall, and CPU of all threads) and optimized HLO size."""
    t0 = time.perf_counter()
    lowered = lower()
    t1, c0 = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    t2, c1 = time.perf_counter(), time.process_time()
    return dict(lower_s=t1 - t0, compile_s=t2 - t1, compile_cpu_s=c1 - c0,
                hlo_kchars=len(compiled.as_text()) / 1e3)


def experiment(model: str, spec: compare.Spec, args):
    fields, shape, classes, aug = common.MODELS[model]
    ds = common.synthetic_dataset(shape, classes, args.examples, aug)
    config = common.bench_config(model, spec, args.batch)
    with mock.patch.object(data, "load", lambda cfg: ds):
        exp = train.build_experiment(config)
    rep = parallel.replicated(exp.mesh)
    state = parallel.to_global(jax.device_get(train.init_state(exp)), rep)
    return exp, state


def trainer_step(exp, state) -> dict:
    """The trainer's step as `train._train` compiles it."""
    sums = parallel.to_global(train.empty_metric_sums(exp, state), parallel.replicated(exp.mesh))
    batches = train._Batches(exp)
    update = batches.compile(train.make_update(exp))
    return timed_compile(lambda: update.lower(state, sums, *batches.get(0)))


def bare_step(model: str, args) -> dict:
    fields, shape, classes, aug = common.MODELS[model]
    ds = common.synthetic_dataset(shape, classes, args.examples, aug)
    arrays = dict(train_x=ds.train.images, train_y=ds.train.labels, test_x=ds.test.images,
                  test_y=ds.test.labels, mean=np.asarray(ds.mean, np.float32),
                  std=np.asarray(ds.std, np.float32))
    job = bare_loop.jax_job(arrays, model, 1, 0, args.batch, 1e-2)
    n = job.data[0].shape[0]
    return timed_compile(lambda: job.step.lower(job.params, job.stats, job.opt_state,
                                                jnp.arange(n), np.int32(0), np.int32(0)))


def pieces(model: str, args) -> list[dict]:
    """BinaryConnect's step built up part by part, and the evaluation function."""
    exp, state = experiment(model, compare.parse_specs("bc")[0], args)
    ds, method = exp.dataset, exp.method
    images = jnp.asarray(ds.train.images[:args.batch])
    labels = jnp.asarray(ds.train.labels[:args.batch])
    x = train._normalize(images, ds)
    sums = train.empty_metric_sums(exp, state)

    def fwd_bwd(latent, batch_stats, x, y):
        loss = lambda w: default_loss(method, exp.model.apply, w, batch_stats, x, y, 0)[0]  # noqa: E731
        return jax.value_and_grad(loss)(latent)

    eval_batch = train.make_eval_fn(exp)
    n_eval = int(exp.config.train.eval_batch_size)
    eval_args = (exp.params, state["batch_stats"], jnp.asarray(ds.test.images[:1].repeat(n_eval, 0)),
                 jnp.zeros((n_eval,), jnp.int32), jnp.ones((n_eval,), bool))
    parts = [
        ("forward + backward (fixed batch)",
         lambda: jax.jit(fwd_bwd).lower(state["latent"], state["batch_stats"], x, labels)),
        ("+ augmentation, optimizer update, non-finite check (make_train_step)",
         lambda: jax.jit(train.make_train_step(exp)).lower(state, images, labels)),
        ("+ device-side metric sums (make_update)",
         lambda: jax.jit(train.make_update(exp)).lower(state, sums, images, labels)),
    ]
    rows = [dict(model=model, part=name, **timed_compile(lower)) for name, lower in parts]
    rows.append(dict(model=model, part="+ in-jit batch gather = the trainer's step",
                     **trainer_step(exp, state)))
    rows.append(dict(model=model, part=f"evaluation function (batch {n_eval})",
                     **timed_compile(lambda: eval_batch.lower(*eval_args))))
    rows.append(dict(model=model, part="bare loop step (bench/bare_loop.py)", **bare_step(model, args)))
    return rows


def startup(args, scratch) -> list[dict]:
    ns = trainer_overhead.parse(["--jobs", args.startup, "--cifar", args.cifar])
    return trainer_overhead.startup(ns, scratch, log=lambda s: print(s, flush=True))


def markdown(payload) -> str:
    m = payload["machine"]
    lines = ["# Compile time of the train step, and start-up with the persistent cache", "",
             f"Machine: {common.machine_line(m)}; load average at the start "
             f"{m['load_start'][0]:.1f} / {m['load_start'][1]:.1f} / {m['load_start'][2]:.1f}. "
             f"Batch {payload['args']['batch']}. CPU = process time of all threads during "
             f"`compile()` (steadier than wall time on a shared machine). HLO = optimized HLO "
             f"text, thousands of characters.", "",
             "Command: `python bench/compile_time.py " + " ".join(payload["argv"]) + "`", ""]
    if payload["methods"]:
        lines += ["## The trainer's train step per method (bare = the bare loop's BinaryConnect step)", "",
                  "| model | method | compile (s) | compile CPU (s) | CPU / bare | lower (s) | HLO (k chars) |",
                  "|---|---|---|---|---|---|---|"]
        for r in payload["methods"]:
            if "note" in r:
                lines.append(f"| {r['model']} | {r['method']} | | | | | {r['note']} |")
                continue
            vs = "–" if r["cpu_vs_bare"] is None else f"{r['cpu_vs_bare']:.2f}"
            lines.append(f"| {r['model']} | {r['method']} | {r['compile_s']:.1f} | {r['compile_cpu_s']:.1f} | "
                         f"{vs} | {r['lower_s']:.1f} | {r['hlo_kchars']:.0f} |")
        lines.append("")
    if payload["pieces"]:
        lines += ["## Where the compile time goes (BinaryConnect, built up part by part)", "",
                  "| model | part | compile (s) | compile CPU (s) | HLO (k chars) |", "|---|---|---|---|---|"]
        for r in payload["pieces"]:
            lines.append(f"| {r['model']} | {r['part']} | {r['compile_s']:.1f} | {r['compile_cpu_s']:.1f} | "
                         f"{r['hlo_kchars']:.0f} |")
        lines.append("")
    if payload["startup"]:
        lines += ["## Start-up: the CLI for one step, twice, one fresh compilation cache", "",
                  "| job | run | wall (s) | CPU (s) | command to first step (s) | train step compile (s) |",
                  "|---|---|---|---|---|---|"]
        for r in payload["startup"]:
            lines.append(f"| {r['job']} | {r['run']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{r['command_to_first_step_s']:.1f} | {r['compile_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    import tempfile
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    args = parse(argv)
    payload = dict(args=vars(args), argv=list(sys.argv[1:] if argv is None else argv),
                   machine=dict(load_start=list(os.getloadavg())), methods=[], pieces=[], startup=[])

    def write():  # after each part: a long run keeps what it has
        payload["machine"] = dict(common.machine(), load_start=payload["machine"]["load_start"])
        common.write(args.out, args.name, payload, markdown(payload))

    for model in [m for m in args.models.split(",") if m]:
        bare = bare_step(model, args) if model in BARE_MODELS else None
        if bare:
            payload["methods"].append(dict(model=model, method="bare", cpu_vs_bare=1.0, **bare))
        methods = args.methods_resnet18 if model == "resnet18" else args.methods
        for spec in compare.parse_specs(methods):
            print(f"{model} / {spec.label}", flush=True)
            try:
                r = trainer_step(*experiment(model, spec, args))
            except UserError as e:  # a method this model cannot run (PD-QAT needs its own model)
                note = "skipped: " + " ".join(str(e).split()).split(";")[0]
                payload["methods"].append(dict(model=model, method=spec.label, note=note))
                continue
            payload["methods"].append(dict(model=model, method=spec.label, cpu_vs_bare=(
                r["compile_cpu_s"] / bare["compile_cpu_s"] if bare else None), **r))
        write()
    for model in [m for m in args.pieces.split(",") if m in BARE_MODELS]:
        print(f"pieces: {model}", flush=True)
        payload["pieces"] += pieces(model, args)
        write()
    if args.startup:
        scratch = args.workdir or tempfile.mkdtemp(prefix="compile_time_")
        os.makedirs(scratch, exist_ok=True)
        payload["startup"] = startup(args, scratch)
        write()
    return payload


if __name__ == "__main__":
    main()
