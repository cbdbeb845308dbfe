"""Benchmark: MetaQuant (each meta net) vs plain STE, 1-bit dorefa weights, SGD, Fashion-MNIST.

MetaQuant's central claim (Chen et al., NeurIPS'19, Table 1) is that under plain SGD
the learned meta-gradient closes most of the gap STE leaves. Every run here has the
same budget: the MLP, quantized leaves (every dense kernel, ±1), SGD learning rate,
schedule, batch size and number of steps of `configs/ste_dorefa_sgd_digits.py` /
`configs/metaquant_dorefa_sgd_digits.py`, on Fashion-MNIST, from scratch.

    python bench/metaquant_vs_ste.py [--steps 200] [--features 64] [--lr 0.1] [--nets multifc,fcgrad,lstmfc]

Writes bench/results/metaquant_vs_ste.json and .md (test accuracy of the
hard-quantized network, seconds per run). A benchmark, not a test: numbers depend
on the budget.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import runpy  # noqa: E402

from jaxquant import train  # noqa: E402


def _config(name: str, args):
    c = runpy.run_path(os.path.join(ROOT, "configs", f"{name}.py"))["get_config"]()
    c.dataset.update(name="fashion_mnist")
    c.model.update(features=tuple(args.features))
    c.optimizer.update(lr=args.lr)
    c.train.update(steps=args.steps, batch_size=args.batch_size, eval_every_steps=args.steps,
                   log_every_steps=max(args.steps // 4, 1))
    c.seed = args.seed
    return c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--features", type=int, nargs="+", default=[64])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--nets", default="multifc,fcgrad,lstmfc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "metaquant_vs_ste"))
    args = p.parse_args(argv)

    runs = [("STE", _config("ste_dorefa_sgd_digits", args))]
    for net in args.nets.split(","):
        c = _config("metaquant_dorefa_sgd_digits", args)
        c.method.meta_net = net
        runs.append((f"MetaQuant {net}", c))

    rows = []
    for label, config in runs:
        with tempfile.TemporaryDirectory() as workdir:
            t0 = time.time()
            result = train.train_and_evaluate(config, workdir, log=lambda *_: None)
        rows.append(dict(method=label, test_accuracy=result["test_accuracy"],
                         seconds=round(time.time() - t0, 1)))
        print(f"{label:20s} test accuracy {100 * result['test_accuracy']:.2f}%  "
              f"({rows[-1]['seconds']} s)", flush=True)

    setup = dict(dataset="fashion_mnist", model=f"mlp {args.features}", weights="dorefa 1 bit (±1)",
                 optimizer=f"sgd lr {args.lr} cosine", steps=args.steps, batch_size=args.batch_size,
                 seed=args.seed)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(dict(setup=setup, results=rows), f, indent=2)
    lines = ["| method | test accuracy (%) | seconds |", "|---|---|---|"]
    lines += [f"| {r['method']} | {100 * r['test_accuracy']:.2f} | {r['seconds']} |" for r in rows]
    with open(args.out + ".md", "w") as f:
        f.write(f"MetaQuant vs STE, {', '.join(f'{k}={v}' for k, v in setup.items())}\n\n"
                + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
