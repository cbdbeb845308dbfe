"""Shared pieces of the benchmarks: the real trainer's step on synthetic in-memory data.

A benchmark config is a model + a method preset (`jaxquant.compare.PRESETS`, or any
registered method name) on a synthetic dataset of the benchmark's shape; the step
is built by `jaxquant.train.build_experiment` + `make_train_step` exactly as a run
builds it (augmentation, normalisation, method forward, loss, optimizer), so the
timing is that of a real training step. Methods whose family module is not in the
checkout are skipped with a note.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # this checkout's jaxquant, not an installed one
    sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxquant import compare, data, train  # noqa: E402
from jaxquant.config import base_config  # noqa: E402
from jaxquant.errors import UserError  # noqa: E402

# model name -> (config.model fields, image shape, classes, augmentation of the real recipe)
MODELS = {
    "resnet20": (dict(name="resnet20"), (32, 32, 3), 10, "crop_flip"),
    "resnet18": (dict(name="resnet18", stem="cifar"), (32, 32, 3), 10, "crop_flip"),
    "mlp": (dict(name="mlp", features=(256, 256)), (28, 28, 1), 10, "none"),
    # PD-QAT needs switchable precision; width x1 (the paper's x5 is 25x the FLOPs of ResNet-20)
    "resnet20q": (dict(name="resnet20q", expand=1), (32, 32, 3), 10, "crop_flip"),
}


def synthetic_dataset(image_shape, num_classes: int, n: int, augment: str, seed: int = 0):
    """A `jaxquant.data.Dataset` of random uint8 images and labels (no files)."""
    rng = np.random.RandomState(seed)
    split = data.Split(rng.randint(0, 256, (n, *image_shape), dtype=np.uint8),
                       rng.randint(0, num_classes, (n,)).astype(np.int32))
    mean, std = data.channel_stats(split.images)
    return data.Dataset(train=split, validation=None, test=split, num_classes=num_classes,
                        image_shape=tuple(image_shape), mean=mean, std=std, augment=augment,
                        class_names=tuple(str(i) for i in range(num_classes)))


def bench_config(model: str, spec: compare.Spec, batch: int, budget_steps: int = 100_000):
    """base_config with `model`, batch `batch` and the method of `spec` (a compare preset)."""
    c = base_config()
    fields, shape, _, _ = MODELS[model]
    c.model.update(fields)
    c.dataset.name = f"synthetic:{model}"  # a ':' name skips the registry check; load is patched
    c.train.update(batch_size=batch, steps=budget_steps)
    return compare.method_config(c, spec, compare.Budget(budget_steps, 1000), workdir="")


class Step:
    """A compiled real train step with its state and one device-resident batch."""

    def __init__(self, config, dataset):
        with mock.patch.object(data, "load", lambda cfg: dataset):
            exp = train.build_experiment(config)
        self.batch = int(config.train.batch_size)
        rep = jax.sharding.NamedSharding(exp.mesh, jax.sharding.PartitionSpec())
        sharded = jax.sharding.NamedSharding(exp.mesh, jax.sharding.PartitionSpec("data"))
        self.state = jax.device_put(train.init_state(exp), rep)
        idx = np.arange(self.batch) % len(dataset.train)
        self.images, self.labels = jax.device_put(dataset.train.get_batch(idx), sharded)
        t0 = time.perf_counter()
        lowered = jax.jit(train.make_train_step(exp), donate_argnums=0).lower(
            self.state, self.images, self.labels)
        self.compiled = lowered.compile()
        self.compile_seconds = time.perf_counter() - t0
        mem = self.compiled.memory_analysis()
        self.step_bytes = None if mem is None else int(
            mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)
        cost = self.compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        self.gflops = float(cost.get("flops", 0.0)) / 1e9 if cost else None
        self.run(1)  # first execution (allocation, thread pools) is not timed

    def run(self, steps: int) -> float:
        """Seconds per step, averaged over `steps` consecutive steps."""
        t0 = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.compiled(self.state, self.images, self.labels)
        jax.block_until_ready((self.state, metrics))
        return (time.perf_counter() - t0) / steps


def _check_method(config) -> None:
    """Build the method alone (cheap: no model, no data) so a missing one fails fast."""
    import optax
    from jaxquant import methods
    ctx = methods.Context(config=config, optimizer=optax.identity(),
                          learning_rate=optax.constant_schedule(0.0), mask=lambda p: p,
                          steps_per_epoch=1)
    methods.build(str(config.method.name), ctx)


def try_build(config, dataset):
    """(Step, None) or (None, why) for a method that cannot be built in this checkout."""
    try:
        _check_method(config)
        return Step(config, dataset), None
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("jaxquant."):
            raise
        return None, f"skipped: {e.name} is not in this checkout (method not implemented yet)"
    except UserError as e:
        return None, "skipped: " + " ".join(str(e).split()).split(". ")[0]


def interleaved(timers: dict, rounds: int, steps: int) -> dict:
    """Seconds per step of each timer over `rounds` rounds; every round runs each timer once,
    in an order rotated by one per round, so slow phases of a noisy machine hit all alike."""
    names = list(timers)
    times = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            times[n].append(timers[n](steps))
    return times


def median_ratio(times: dict, name: str, ref: str) -> float:
    """Median over rounds of (step time of `name`) / (step time of `ref` in the same round)."""
    return statistics.median(a / b for a, b in zip(times[name], times[ref]))


def step_rows(model: str, specs, steps: dict, times: dict, notes: dict, batch: int,
              torch_note) -> list[dict]:
    """One result row per method (its note where it was not timed) and, if PyTorch was
    timed, one for the plain PyTorch step: median step time, images/s and the same-round
    median ratio to fp."""
    rows = []
    for spec in specs:
        if spec.label in notes:
            rows.append(dict(model=model, method=spec.label, note=notes[spec.label]))
            continue
        s, t = steps[spec.label], times[spec.label]
        med = statistics.median(t)
        rows.append(dict(model=model, method=spec.label, batch=batch, step_ms=1e3 * med,
                         step_ms_all=[1e3 * x for x in t], images_per_s=batch / med,
                         ratio_vs_fp=median_ratio(times, spec.label, "fp"),
                         compile_s=s.compile_seconds, step_bytes=s.step_bytes, gflops=s.gflops))
    if "torch" in times:
        med = statistics.median(times["torch"])
        rows.append(dict(model=model, method="torch (plain PyTorch fp)", batch=batch,
                         step_ms=1e3 * med, step_ms_all=[1e3 * x for x in times["torch"]],
                         images_per_s=batch / med, ratio_vs_fp=median_ratio(times, "torch", "fp"),
                         jax_fp_over_torch=median_ratio(times, "fp", "torch"), note=torch_note))
    return rows


def machine() -> dict:
    """What the numbers were measured on, including how busy the machine was."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    return dict(platform=dev.platform, device_kind=dev.device_kind, devices=len(jax.devices()),
                cpu_count=os.cpu_count(), load_average=list(os.getloadavg()),
                python=platform.python_version(), jax=jax.__version__,
                device_peak_bytes=(stats or {}).get("peak_bytes_in_use"),
                max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def machine_line(m: dict) -> str:
    return (f"{m['devices']} x {m['device_kind']} ({m['platform']}), {m['cpu_count']} CPU cores, "
            f"load average {m['load_average'][0]:.1f} / {m['load_average'][1]:.1f} / "
            f"{m['load_average'][2]:.1f} (1/5/15 min) at the end, jax {m['jax']}, {m['time']}")


def write(out: str, name: str, payload: dict, markdown: str) -> None:
    """out/<name>.json and out/<name>.md."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=1)
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    print(f"wrote {os.path.join(out, name)}.json and .md")
