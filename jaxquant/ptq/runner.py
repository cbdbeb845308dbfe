"""L-DNQ (Chen et al., AAAI'19) as a jaxquant run: `python -m jaxquant.main --config configs/ldnq_*.py`.

Loads the full-precision network of `config.init_checkpoint`, draws the seeded
random subset `config.ldnq.data_fraction` of the train split, runs
`jaxquant.ptq.ldnq.ldnq` on it and writes the result as a normal run, so that
`python -m jaxquant.export --workdir` and `python -m jaxquant.evaluate` read it:
`config.json`, `checkpoints/` (the `weights` item), `summary.txt` and
`result.json` (test accuracy of the quantized network, the full-precision one,
and one entry per layer). The cascade optimizer is `config.optimizer` (the
L-DNQ configs set SGD 1e-3, momentum 0.9, weight decay 5e-4). Single process:
the layer loop runs on one device.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import time

import jax
import numpy as np

from jaxquant import checkpoints, parallel, train, workdir as workdir_lib
from jaxquant.config_check import validate
from jaxquant.data import augment as augment_lib
from jaxquant.errors import ConfigError
from jaxquant.export import summary_table
from jaxquant.masks import param_paths
from jaxquant.optim import make_optimizer
from jaxquant.ptq.ldnq import HESSIAN_ORDERS, Settings, ldnq


def settings_from_config(config) -> Settings:
    """`Settings` from `config.ldnq` (missing fields at their defaults), checked."""
    section = dict(config.get("ldnq", None) or {})
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for key in section:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key config.ldnq.{key}.{hint} Valid keys: "
                              f"{', '.join(sorted(fields))}.")
    s = Settings(**section)
    if s.levels not in (3, 5, 7, 9, 11):
        raise ConfigError(f"config.ldnq.levels must be 3, 5, 7, 9 or 11, got {s.levels!r}.")
    if s.hessian_order not in HESSIAN_ORDERS:
        raise ConfigError(f"config.ldnq.hessian_order must be one of {', '.join(HESSIAN_ORDERS)}, "
                          f"got {s.hessian_order!r}.")
    if not isinstance(s.cascade_own_bias, bool):
        raise ConfigError(f"config.ldnq.cascade_own_bias must be True or False, "
                          f"got {s.cascade_own_bias!r}.")
    if int(s.hessian_images) < 0:
        raise ConfigError(f"config.ldnq.hessian_images must be >= 0 (0 = every image of the "
                          f"subset), got {s.hessian_images!r}.")
    if not 0 < float(s.data_fraction) <= 1:
        raise ConfigError(f"config.ldnq.data_fraction must be in (0, 1], got {s.data_fraction!r}.")
    for name in ("batch_size", "admm_patience", "projection_iterations", "cascade_check_every",
                 "cascade_patience", "cascade_max_epochs"):
        if int(getattr(s, name)) < 1:
            raise ConfigError(f"config.ldnq.{name} must be a positive integer, "
                              f"got {getattr(s, name)!r}.")
    return s


def _finished_run(plan) -> dict | None:
    """The result of a finished run of exactly this config in the planned workdir, if any."""
    if plan.action == "replace" or plan.changes:
        return None
    result = os.path.join(plan.path, "result.json")
    if os.path.isfile(result) and os.path.isdir(os.path.join(plan.path, checkpoints.CHECKPOINT_DIR)):
        with open(result) as f:
            return json.load(f)
    return None  # new, or unfinished: L-DNQ is not resumable, it starts again


def _subset(split, fraction: float, seed: int) -> np.ndarray:
    """uint8 images of a seeded random `fraction` of `split` (at least one image)."""
    n_all = len(split)
    n = max(int(fraction * n_all), 1)
    idx = np.sort(np.random.default_rng(seed).permutation(n_all)[:n])
    return split.get_batch(idx)[0]


def _progress(total: int):
    from tqdm import tqdm
    return tqdm(total=total, disable=not sys.stderr.isatty(), unit="layer", dynamic_ncols=True,
                leave=False)


def run(config, workdir: str, overwrite: bool = False, log=print) -> dict:
    """Quantize `config.init_checkpoint`'s network with L-DNQ into the run `workdir`
    (workdir rules of `jaxquant.workdir`; an unfinished run starts again)."""
    settings = settings_from_config(config)
    if not config.init_checkpoint:
        raise ConfigError(
            "L-DNQ quantizes a trained network: set config.init_checkpoint to the workdir of a "
            "full-precision run of the same model (e.g. runs/fp_cifar10_resnet20, trained with "
            "configs/fp_cifar10_resnet20.py).")
    validate(config)
    plan = workdir_lib.plan(workdir, config, overwrite=overwrite, resumable=False)
    done = _finished_run(plan)
    if done is not None:
        log(f"{workdir} already holds this finished L-DNQ run; pass --overwrite to redo it.")
        return done
    t0 = time.time()
    exp = train.build_experiment(config)  # loads data, model and the FP weights
    main_process = parallel.is_main_process()
    with workdir_lib.claimed(plan, main_process=main_process, log=log):
        return _quantize(exp, settings, workdir, t0, log)


def _quantize(exp, settings, workdir: str, t0: float, log) -> dict:
    config, ds = exp.config, exp.dataset
    main_process = parallel.is_main_process()
    eval_batch = train.make_eval_fn(exp)
    fp = train.evaluate(exp, eval_batch, exp.params, exp.batch_stats, ds.test)
    images = _subset(ds.train, float(settings.data_fraction), int(config.seed))
    log(f"L-DNQ, {settings.levels} levels: {len(images)} of {len(ds.train)} train images; "
        f"full-precision test accuracy {100 * fp['accuracy']:.2f}%")

    def preprocess(key, batch):
        return augment_lib.normalize(augment_lib.augment(key, batch, ds.augment), ds.mean, ds.std)

    n_layers = sum(m and p.endswith("kernel")
                   for p, m in zip(param_paths(exp.mask), jax.tree.leaves(exp.mask)))
    bar = _progress(n_layers)
    write = bar.write if not bar.disable else log
    try:
        out = ldnq(exp.model, exp.params, exp.batch_stats, images, exp.mask, settings=settings,
                   preprocess=preprocess,
                   tx=make_optimizer(config.optimizer, float(config.optimizer.lr)),
                   key=jax.random.PRNGKey(int(config.seed)), log=write, progress=bar)
    finally:
        bar.close()
    test = train.evaluate(exp, eval_batch, out.params, out.batch_stats, ds.test)
    result = dict(step=out.steps, preempted=False, seconds=time.time() - t0,
                  test_accuracy=test["accuracy"], final_test_accuracy=test["accuracy"],
                  test_loss=test["loss"], fp_test_accuracy=fp["accuracy"], levels=settings.levels,
                  limited_images=int(len(images)),
                  layers=[dict(r._asdict(), shape=list(r.shape)) for r in out.layers])
    if main_process:
        ckpt = checkpoints.Checkpointer(workdir, keep=1)
        ckpt.save(out.steps, dict(params=out.params, batch_stats=out.batch_stats),
                  dict(test_accuracy=test["accuracy"]))
        ckpt.close()
        table = summary_table(out.params, exp.mask)
        with open(os.path.join(workdir, "summary.txt"), "w") as f:
            f.write(table + "\n")
        log(table)
        with open(os.path.join(workdir, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
    log(f"L-DNQ test accuracy {100 * test['accuracy']:.2f}% (full precision "
        f"{100 * fp['accuracy']:.2f}%)")
    return result

