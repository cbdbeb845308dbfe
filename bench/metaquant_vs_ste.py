"""Benchmark: MetaQuant (each meta net) vs STE, 1-bit dorefa weights, SGD, Fashion-MNIST.

MetaQuant's central claim (Chen et al., NeurIPS'19, Table 1) is that under plain SGD
the learned meta-gradient closes most of the gap STE leaves. Every run here has the
same budget: the MLP, quantized leaves (every dense kernel, ±1), SGD learning rate,
schedule, batch size and number of steps of `configs/ste_dorefa_sgd_digits.py` /
`configs/metaquant_dorefa_sgd_digits.py`, on Fashion-MNIST, from scratch. Both
configs run the official behaviour behind Table 1: the STE of MetaQuant's
utils/quantize.py (d/dW = (1 - tanh² W) / max|tanh W| at 1 bit, max detached) and
the released meta-quantize.py's step rule (variant='released').

    python bench/metaquant_vs_ste.py [--steps 200] [--features 64] [--lr 0.1]
        [--nets multifc,fcgrad,lstmfc] [--seeds 0,1,2] [--default_ste 1]

A reference row runs the same STE with the library default 1-bit backward (straight
through sign, d/dW = 1; `--default_ste 0` drops it). Writes
bench/results/metaquant_vs_ste.json and .md after every run (test accuracy of
the hard-quantized network per seed, mean ± std over seeds, seconds per run). A
benchmark, not a test: numbers depend on the budget.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import runpy  # noqa: E402

from jaxquant import train  # noqa: E402


def _config(name: str, args, seed: int):
    c = runpy.run_path(os.path.join(ROOT, "configs", f"{name}.py"))["get_config"]()
    c.dataset.update(name="fashion_mnist")
    c.model.update(features=tuple(args.features))
    c.optimizer.update(lr=args.lr)
    c.train.update(steps=args.steps, batch_size=args.batch_size, eval_every_steps=args.steps,
                   log_every_steps=max(args.steps // 4, 1))
    c.seed = seed
    return c


def _summary(accs):
    """(mean, sample std) in %, std None for one seed."""
    a = np.asarray(accs, dtype=float) * 100
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def _write(out, setup, rows):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(dict(setup=setup, results=rows), f, indent=2)
    lines = ["| method | test accuracy (%), mean ± std | per seed (%) | seconds per run |",
             "|---|---|---|---|"]
    for r in rows:
        mean, std = _summary(r["test_accuracy"])
        spread = f" ± {std:.2f}" if std is not None else " (1 seed)"
        seeds = ", ".join(f"{s}: {100 * a:.2f}" for s, a in zip(r["seeds"], r["test_accuracy"]))
        lines.append(f"| {r['method']} | {mean:.2f}{spread} | {seeds} | "
                     f"{np.mean(r['seconds']):.1f} |")
    with open(out + ".md", "w") as f:
        f.write(f"MetaQuant vs STE, {', '.join(f'{k}={v}' for k, v in setup.items())}\n\n"
                f"Command: `{' '.join(['python bench/metaquant_vs_ste.py', *setup['argv']])}`\n\n"
                + "\n".join(lines) + "\n")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--features", type=int, nargs="+", default=[64])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--nets", default="multifc,fcgrad,lstmfc")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated; mean ± std over them")
    p.add_argument("--default_ste", type=int, default=1,
                   help="1: also run the STE with the library default 1-bit backward (reference)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "metaquant_vs_ste"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    def configs(seed):
        yield "STE", _config("ste_dorefa_sgd_digits", seed=seed, args=args)
        if args.default_ste:  # for reference: the library default, not MetaQuant's rule
            c = _config("ste_dorefa_sgd_digits", seed=seed, args=args)
            c.method.one_bit_backward = "identity"
            yield "STE, identity through sign (library default)", c
        for net in args.nets.split(","):
            c = _config("metaquant_dorefa_sgd_digits", seed=seed, args=args)
            c.method.meta_net = net
            yield f"MetaQuant {net}", c

    ste = _config("ste_dorefa_sgd_digits", args, seeds[0]).method
    mq = _config("metaquant_dorefa_sgd_digits", args, seeds[0]).method
    setup = dict(argv=list(sys.argv[1:] if argv is None else argv), dataset="fashion_mnist",
                 model=f"mlp {args.features}", weights="dorefa 1 bit (±1)",
                 optimizer=f"sgd lr {args.lr} cosine", steps=args.steps, batch_size=args.batch_size,
                 seeds=seeds,
                 ste_backward=f"dorefa one_bit_backward={ste.one_bit_backward}, detach_max="
                              f"{ste.detach_max} (MetaQuant utils/quantize.py)",
                 metaquant_variant=f"{mq.variant} (meta-quantize.py step rule)")
    print("official behaviour: STE backward (1 - tanh^2 W)/max|tanh W| at 1 bit "
          f"({setup['ste_backward']}); MetaQuant variant={mq.variant}", flush=True)

    rows = {}
    for seed in seeds:  # every method at a seed before the next seed: partial results stay paired
        for label, config in configs(seed):
            with tempfile.TemporaryDirectory() as workdir:
                t0 = time.time()
                result = train.train_and_evaluate(config, workdir, log=lambda *_: None)
            row = rows.setdefault(label, dict(method=label, seeds=[], test_accuracy=[], seconds=[]))
            row["seeds"].append(seed)
            row["test_accuracy"].append(result["test_accuracy"])
            row["seconds"].append(round(time.time() - t0, 1))
            print(f"{label:20s} seed {seed} test accuracy {100 * result['test_accuracy']:.2f}%  "
                  f"({row['seconds'][-1]} s)", flush=True)
            lines = _write(args.out, setup, list(rows.values()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
