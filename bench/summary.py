"""One table of step-cost ratios (method step time / fp step time) from step_time JSON files.

Rows are methods, columns are the models of the given runs (a later file's
column for the same model replaces an earlier one, method by method, so a
focused rerun of a few methods updates a full run), cells are `ratio_vs_fp` as
measured within one run. The first rows give each column's full-precision step
time, batch and source file.

    python bench/summary.py bench/results/step_time_cifar_all.json \
        bench/results/step_time_resnet18_simplex.json bench/results/step_time_mlp_all.json
"""
from __future__ import annotations

import argparse
import json
import os


def load(paths):
    """{model: {method: row}} and {model: source file}, later files overriding earlier ones."""
    cells, source = {}, {}
    for path in paths:
        with open(path) as f:
            rows = json.load(f)["rows"]
        for r in rows:
            if "ratio_vs_fp" not in r:
                continue
            cells.setdefault(r["model"], {})[r["method"]] = r
            source.setdefault(r["model"], set()).add(os.path.basename(path))
    return cells, source


def _ms(ms: float) -> str:
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def table(cells, source) -> str:
    models = list(cells)
    methods = []
    for m in models:
        methods += [k for k in cells[m] if k not in methods]
    head = "| method | " + " | ".join(models) + " |"
    lines = [head, "|" + "---|" * (len(models) + 1)]
    fp = [cells[m].get("fp") for m in models]
    lines.append("| fp step (ms), batch | " + " | ".join(
        f"{_ms(r['step_ms'])}, {r['batch']}" if r else "" for r in fp) + " |")
    for method in methods:
        if method == "fp":
            continue
        lines.append(f"| {method} | " + " | ".join(
            f"{cells[m][method]['ratio_vs_fp']:.2f}" if method in cells[m] else "–"
            for m in models) + " |")
    lines.append("| source | " + " | ".join(", ".join(sorted(source[m])) for m in models) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="bench/step_time.py JSON results")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)
    text = table(*load(args.files))
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
