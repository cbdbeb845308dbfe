"""The GPU check (bench/gpu_check.sh runs it): step cost of every method against PyTorch,
the CIFAR-10 JPEG pipeline, and a short CIFAR-10 training, inside a time budget.

(a) step time of every method at batch 128 on ResNet-20 and ResNet-18 (CIFAR stem),
    interleaved with a plain PyTorch step of the same model and batch on the same device
    (bench/step_time.py's harness; methods are compiled in threads, XLA compiles
    without the GIL); methods that do not fit the budget are listed as not timed;
(b) the JPEG pipeline: decoding the image folder into jaxquant's cache (images/s), reading
    the cache back, on-device pad-4 crop + flip + normalise (images/s), and whether the
    step waits for data: the trainer's step (batch gathered and augmented on the device
    from the resident dataset, several steps per call) against the same step on a fixed
    resident batch;
(c) a short CIFAR-10 training of fp, bc, md_tanh_s, pmf, proxquant_binary on ResNet-20
    (Adam 1e-3, cosine, batch 128, the compare presets) for as many epochs as the budget
    left allows, test accuracy of the hard-quantized network after every epoch;
(d) the step time of the byte-level transformer LM (4 layers x 256 wide, windows of 256
    bytes, batch 64, learned per-projection weight scale as configs/lm_fortunes_fp.py):
    full precision vs BitNet b1.58 ternary vs MD-tanh-S ternary, interleaved rounds.

Writes <out>/gpu_step_time.{json,md}, gpu_data.{json,md}, gpu_train.{json,md},
gpu_lm_step_time.{json,md}
(<prefix>_* with --prefix). `--dry-run`: CPU, tiny sizes, a random image folder;
the test suite runs it so that this script cannot rot.

    python bench/gpu_check.py --cifar /tmp/cifar10-jpeg --out bench/results --budget 480
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from trainer_overhead import random_image_folder  # noqa: E402  (bench/, no jax import)

TRAIN_METHODS = "fp,bc,md_tanh_s,pmf,proxquant_binary"
LM_METHODS = "fp,bitnet,md_tanh_s_ternary"
LM_MODEL = dict(name="transformer", layers=4, width=256, heads=4, seq_len=256, mlp_ratio=4,
                weight_scale="learned")
LM_BATCH = 64


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--prefix", default="gpu")
    p.add_argument("--cifar", default="", help="CIFAR-10 image folder (train/<class>/*.jpg, test/...)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for (a) + (b) + (c)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--models", default="resnet20,resnet18")
    p.add_argument("--methods", default=None, help="(a): default every method of bench/step_time.py")
    p.add_argument("--train-methods", default=TRAIN_METHODS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="(a): steps per timed block")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--compile-threads", type=int, default=8)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (the test suite)")
    p.add_argument("--lm-methods", default=LM_METHODS)
    args = p.parse_args(argv)
    args.lm_model, args.lm_batch = dict(LM_MODEL), LM_BATCH
    if args.dry_run:
        args.lm_model.update(layers=1, width=16, heads=2, seq_len=16)
        args.lm_batch = 4
        args.batch, args.rounds, args.steps, args.max_epochs = 8, 1, 1, 1
        args.models = "resnet20"
        args.methods = args.methods or "fp,bc"
        args.train_methods = "fp,bc"
        args.compile_threads = 2
        args.budget = max(args.budget, 1e6)  # a loaded CI machine must not skip parts
    return args


class Clock:
    """The budget: seconds left, and a part's share of them."""

    def __init__(self, budget: float):
        self.end = time.perf_counter() + budget

    def left(self) -> float:
        return self.end - time.perf_counter()


def load_cifar(folder: str, data_dir: str):
    import ml_collections
    from jaxquant import data
    return data.load(ml_collections.ConfigDict(dict(name=f"image_folder:{folder}", data_dir=data_dir,
                                                    validation=0, augment="")))


# ------------------------------------------------------------------ (a) step time

def step_times(args, budget: float, log=print) -> list[dict]:
    """Rows as bench/step_time.py writes them, methods compiled in threads; each model
    gets an equal share of `budget` seconds."""
    from unittest import mock
    import common
    import step_time
    from jaxquant import compare, data
    start = time.perf_counter()
    specs = compare.parse_specs(args.methods or step_time.DEFAULT_METHODS)
    if "fp" not in [s.label for s in specs]:
        specs = compare.parse_specs("fp") + specs
    models = args.models.split(",")
    rows, kept = [], {}
    for k, model in enumerate(models):
        part_end = time.perf_counter() + (budget - (time.perf_counter() - start)) / (len(models) - k)
        _, shape, classes, augment = common.MODELS[model]
        ds = common.synthetic_dataset(shape, classes, max(args.batch, 256), augment)

        def build(spec, model=model, ds=ds):
            if time.perf_counter() > part_end:
                return spec, None, "not timed: over the time budget"
            step, why = common.try_build(common.bench_config(model, spec, args.batch), ds)
            return spec, step, why

        steps, notes = {}, {}
        # Step patches data.load in each thread; the outer patch keeps every interleaving
        # of those patches returning this dataset
        with mock.patch.object(data, "load", lambda cfg, ds=ds: ds), \
                concurrent.futures.ThreadPoolExecutor(args.compile_threads) as pool:
            for spec, step, why in pool.map(build, specs):
                if step is None:
                    notes[spec.label] = why
                else:
                    steps[spec.label] = step
                log(f"  {model} / {spec.label}: " + (why or f"compiled in {step.compile_seconds:.1f} s"))
        if "fp" in steps:
            kept[model] = steps["fp"]
        timers = {label: s.run for label, s in steps.items()}
        torch_note = None
        if model in step_time.TORCH_MODELS:
            tstep, torch_note = torch_step(model, args.batch)
            if tstep is not None:
                timers["torch"] = tstep.run
        # as many rounds as fit the part's time (at least one)
        t = time.perf_counter()
        times = common.interleaved(timers, 1, args.steps)
        per_round = time.perf_counter() - t
        more = min(args.rounds - 1, int(max(part_end - time.perf_counter(), 0) / max(per_round, 1e-9)))
        if more > 0:
            extra = common.interleaved(timers, more, args.steps)
            times = {n: times[n] + extra[n] for n in times}
        rows += common.step_rows(model, specs, steps, times, notes, args.batch, torch_note)
        if "torch" not in times and torch_note:
            rows.append(dict(model=model, method="torch", note=f"skipped: {torch_note}"))
    return rows, kept


def torch_step(model: str, batch: int):
    try:
        import torch
    except ImportError:
        return None, "PyTorch not installed"
    from torch_resnet import TorchStep
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    return TorchStep(batch, model, device=device), (
        f"torch {torch.__version__} on {device}, cudnn.benchmark on")


# ------------------------------------------------------------------ (d) language model

def lm_step_times(args, scratch: str, log=print) -> list[dict]:
    """Step time of the transformer LM per method of `args.lm_methods` (compare presets),
    the trainer's real step on windows of a random byte file, interleaved rounds."""
    import ml_collections
    import numpy as np
    import common
    from jaxquant import compare
    from jaxquant.config import base_config
    from jaxquant.data import text
    from jaxquant.models.transformer import QUANT_INCLUDE
    seq, batch = args.lm_model["seq_len"], args.lm_batch
    path = os.path.join(scratch, "lm_bytes.bin")
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 40 * (seq + 1) * batch, np.uint8).tobytes())
    ds = text.dataset(f"text_file:{path}", seq)
    specs = compare.parse_specs(args.lm_methods)
    steps, notes = {}, {}
    for spec in specs:
        c = base_config()
        c.dataset.update(name="synthetic:lm", seq_len=seq)  # a ':' name; Step patches data.load
        c.model = ml_collections.ConfigDict(args.lm_model)
        c.quant.update(include=list(QUANT_INCLUDE))
        c.train.update(batch_size=batch, steps=100_000)
        c = compare.method_config(c, spec, compare.Budget(100_000, 1000), workdir="")
        step, why = common.try_build(c, ds)
        if step is None:
            notes[spec.label] = why
        else:
            steps[spec.label] = step
        log(f"  transformer / {spec.label}: " + (why or f"compiled in {step.compile_seconds:.1f} s"))
    times = common.interleaved({label: s.run for label, s in steps.items()}, args.rounds, args.steps)
    rows = common.step_rows("transformer", specs, steps, times, notes, batch, None)
    for r in rows:
        if "images_per_s" in r:
            r["tokens_per_s"] = r["images_per_s"] * seq
    return rows


def md_lm(rows, machine, args) -> str:
    m = args.lm_model
    lines = ["# Transformer LM step time: full precision vs ternary", "",
             f"Machine: {machine}. {m['layers']} layers x {m['width']} wide, {m['heads']} heads, "
             f"windows of {m['seq_len']} bytes, batch {args.lm_batch}, learned per-projection "
             f"weight scale (configs/lm_fortunes_fp.py's model); the trainer's real step; "
             f"{args.rounds} interleaved rounds of {args.steps} steps; ratio = median over rounds "
             f"of (method step / fp step in the same round).", "",
             "| method | step (ms) | tokens/s | ratio vs fp | compile (s) | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "step_ms" not in r:
            lines.append(f"| {r['method']} | | | | | {r.get('note', '')} |")
            continue
        lines.append(f"| {r['method']} | {r['step_ms']:.2f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['ratio_vs_fp']:.2f} | {r['compile_s']:.1f} | |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ (b) data

def data_pipeline(args, folder: str, scratch: str, batch: int, fixed_step=None, log=print) -> dict:
    import jax
    import numpy as np
    from jaxquant.data import augment as augment_lib
    cache = os.path.join(scratch, "data_cache")
    t = time.perf_counter()
    ds = load_cifar(folder, cache)  # decodes every JPEG into the cache
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    ds = load_cifar(folder, cache)  # reads the cache back
    cached_s = time.perf_counter() - t
    n = len(ds.train.labels) + len(ds.test.labels)
    log(f"  decode {n / decode_s:.0f} images/s, cached read {n / cached_s:.0f} images/s")

    images = jax.device_put(ds.train.images)
    size = min(batch, len(ds.train.labels))

    @jax.jit
    def augment(key, i):
        idx = jax.random.randint(jax.random.fold_in(key, i), (size,), 0, images.shape[0])
        x = augment_lib.augment(jax.random.fold_in(key, i + 1), images[idx], "crop_flip")
        return augment_lib.normalize(x, ds.mean, ds.std)

    key = jax.random.PRNGKey(0)
    jax.block_until_ready(augment(key, 0))
    calls = 5 if args.dry_run else 200
    t = time.perf_counter()
    for i in range(calls):
        out = augment(key, i)
    jax.block_until_ready(out)
    augment_s = (time.perf_counter() - t) / calls
    log(f"  on-device gather + crop_flip + normalise: {size / augment_s:.0f} images/s")
    wait = step_wait(ds, batch, 3 if args.dry_run else 60, fixed_step)
    return dict(images=n, decode_s=decode_s, decode_images_per_s=n / decode_s, cached_read_s=cached_s,
                cached_images_per_s=n / cached_s, augment_batch=size, augment_ms=1e3 * augment_s,
                augment_images_per_s=size / augment_s, **wait)


def step_wait(ds, batch: int, steps: int, fixed=None) -> dict:
    """The trainer's step (batch gathered from the resident dataset and augmented, one call
    per step as the trainer runs it) against the same step on a fixed resident batch
    (`fixed`, a bench/common.py Step of ResNet-20 fp at this batch, built if None)."""
    import jax
    import numpy as np
    from unittest import mock
    import common
    from jaxquant import compare, data, parallel, train
    config = common.bench_config("resnet20", compare.parse_specs("fp")[0], batch)
    with mock.patch.object(data, "load", lambda cfg: ds):
        exp = train.build_experiment(config)
    steps = min(steps, exp.steps_per_epoch)
    rep = parallel.replicated(exp.mesh)
    state = jax.device_put(train.init_state(exp), rep)
    sums = jax.device_put(train.empty_metric_sums(exp, state), rep)
    batches = train._Batches(exp)
    compiled = batches.compile(train.make_update(exp)).lower(state, sums, *batches.get(0)).compile()
    fixed = fixed or common.Step(config, ds)
    carry = [state, sums]

    def trainer(k):
        t = time.perf_counter()
        for i in range(k):
            carry[:] = compiled(*carry, *batches.get(i % steps))
        jax.block_until_ready(carry)
        return (time.perf_counter() - t) / k

    trainer(1)  # warm-up
    times = common.interleaved({"trainer": trainer, "fixed": fixed.run}, 3, steps)
    trainer_ms, fixed_ms = (1e3 * statistics.median(times[k]) for k in ("trainer", "fixed"))
    return dict(trainer_step_ms=trainer_ms, fixed_batch_step_ms=fixed_ms, steps_timed=steps,
                trainer_over_fixed=common.median_ratio(times, "trainer", "fixed"),
                data_share_of_step=max(0.0, 1 - 1 / common.median_ratio(times, "trainer", "fixed")))


# ------------------------------------------------------------------ (c) training

def short_training(args, folder: str, scratch: str, clock: Clock, step_ms: float | None,
                   log=print) -> list[dict]:
    from jaxquant import compare, data, train
    from jaxquant.config import base_config
    from jaxquant.metrics import read_metrics
    import ml_collections
    n_train = len(data.load(ml_collections.ConfigDict(dict(
        name=f"image_folder:{folder}", data_dir=os.path.join(scratch, "data_cache"),
        validation=0, augment=""))).train.labels)
    per_epoch = max(n_train // args.batch, 1)
    specs = compare.parse_specs(args.train_methods)
    overhead_s = 60.0 if not args.dry_run else 0.0  # compile + evaluation per method, roughly
    epoch_s = 1.5 * per_epoch * (step_ms or 50.0) / 1e3
    epochs = int(max(clock.left() / len(specs) - overhead_s, 0) / max(epoch_s, 1e-9))
    epochs = max(1, min(args.max_epochs, epochs))
    log(f"  {len(specs)} methods x {epochs} epochs of {per_epoch} steps")
    rows = []
    for spec in specs:
        c = base_config()
        c.dataset.update(name=f"image_folder:{folder}", data_dir=os.path.join(scratch, "data_cache"),
                         validation=0)
        c.model.update(name="resnet20")
        c.optimizer.update(name="adam", lr=1e-3)
        c.schedule.update(kind="cosine")
        c.train.update(batch_size=args.batch, epochs=epochs, select_best=False)
        c = compare.method_config(c, spec, compare.Budget(epochs * per_epoch, per_epoch, 1e-3), workdir="")
        workdir = os.path.join(scratch, "train", spec.label)
        t = time.perf_counter()
        result = train.run(c, workdir, overwrite=True) if clock.left() > 0 or not rows else None
        if result is None:
            rows.append(dict(method=spec.label, note="not run: over the time budget"))
            continue
        curve = [r["test_accuracy"] for r in read_metrics(workdir) if "test_accuracy" in r]
        rows.append(dict(method=spec.label, epochs=epochs, steps=result["step"], seconds=time.perf_counter() - t,
                         test_accuracy=result["test_accuracy"], test_accuracy_per_epoch=curve,
                         timing=result["timing"]))
        log(f"  {spec.label}: test accuracy per epoch {[round(a, 4) for a in curve]}")
    return rows


# ------------------------------------------------------------------ output

def device_line() -> str:
    import common
    return common.machine_line(common.machine())


def md_data(d, machine) -> str:
    return "\n".join([
        "# CIFAR-10 JPEG pipeline", "", f"Machine: {machine}.", "",
        "| stage | value |", "|---|---|",
        f"| decode {d['images']} JPEGs into the cache | {d['decode_s']:.1f} s, {d['decode_images_per_s']:.0f} images/s |",
        f"| read the decoded cache | {d['cached_read_s']:.2f} s, {d['cached_images_per_s']:.0f} images/s |",
        f"| on-device gather + crop_flip + normalise, batch {d['augment_batch']} | "
        f"{d['augment_ms']:.3f} ms, {d['augment_images_per_s']:.0f} images/s |",
        f"| trainer step, ResNet-20 fp (data gathered + augmented on device) | {d['trainer_step_ms']:.2f} ms |",
        f"| same step on a fixed resident batch | {d['fixed_batch_step_ms']:.2f} ms |",
        f"| trainer step / fixed-batch step (median of same-round ratios) | {d['trainer_over_fixed']:.2f} |",
        f"| share of the step spent on data | {100 * d['data_share_of_step']:.1f}% |", ""])


def md_train(rows, machine, batch: int) -> str:
    lines = [f"# Short CIFAR-10 training, ResNet-20 (Adam 1e-3 cosine, batch {batch})", "",
             f"Machine: {machine}. Test accuracy of the hard-quantized network after each epoch.", "",
             "| method | epochs | seconds | final test acc. | per epoch |", "|---|---|---|---|---|"]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['method']} | | | | {r['note']} |")
        else:
            lines.append(f"| {r['method']} | {r['epochs']} | {r['seconds']:.0f} | "
                         f"{100 * r['test_accuracy']:.2f}% | "
                         + ", ".join(f"{100 * a:.1f}" for a in r["test_accuracy_per_epoch"]) + " |")
    return "\n".join(lines) + "\n"


def save(args, name: str, payload: dict, text: str) -> None:
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.prefix}_{name}")
    with open(stem + ".json", "w") as f:
        json.dump(payload, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text)
    print(text, flush=True)


def main(argv=None):
    args = parse(argv)
    t0 = time.perf_counter()
    clock = Clock(args.budget)
    import common
    import step_time
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    scratch = tempfile.mkdtemp(prefix="gpu_check_")
    folder = args.cifar or random_image_folder(os.path.join(scratch, "cifar"), train=4, test=2,
                                                  ext="jpg")
    log = lambda s: print(s, flush=True)  # noqa: E731
    machine = device_line()
    print(f"device: {machine}", flush=True)

    print("(a) step time", flush=True)
    rows, fp_steps = step_times(args, 0.55 * clock.left(), log)
    ns = argparse.Namespace(**{**vars(args), "threads": 0})
    save(args, "step_time", dict(args=vars(args), machine=common.machine(), rows=rows),
         step_time.markdown(rows, common.machine(), ns))

    print("(b) data pipeline", flush=True)
    d = data_pipeline(args, folder, scratch, args.batch, fp_steps.get("resnet20"), log)
    save(args, "data", dict(args=vars(args), machine=common.machine(), **d), md_data(d, machine))

    print("(d) language model step time", flush=True)
    lm_rows = lm_step_times(args, scratch, log)
    save(args, "lm_step_time", dict(args=vars(args), machine=common.machine(), rows=lm_rows),
         md_lm(lm_rows, machine, args))

    print("(c) short training", flush=True)
    r20 = [r for r in rows if r.get("model") == "resnet20" and "step_ms" in r and r["method"] != "fp"
           and not r["method"].startswith("torch")]
    step_ms = max((r["step_ms"] for r in r20), default=None)
    trained = short_training(args, folder, scratch, clock, step_ms, log)
    save(args, "train", dict(args=vars(args), machine=common.machine(), rows=trained),
         md_train(trained, machine, args.batch))
    print(f"gpu_check: done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
