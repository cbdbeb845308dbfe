"""Rerun the README's CPU commands over seeds and check the figures it quotes.

Every accuracy the README quotes from a CPU command is a claim below: the command,
the seeds it runs over and the group it belongs to (`digits` runs in minutes; the
others take longer). Each run is the README's own command with `--config.seed=<k>`
and a workdir under `--runs`; a claim's figure is the mean ± sample std (ddof 1) of
its runs' test accuracy (`result.json`), a comparison's figures those of
`comparison.md` (`python -m jaxquant.compare ... --seeds`).

    python bench/readme_numbers.py --only digits            # rerun and check
    python bench/readme_numbers.py --only digits --write    # record the new figures

Recorded figures live in bench/results/readme_numbers.json (the README quotes them,
and tests/test_readme_numbers.py checks that every recorded figure appears there).
A rerun matches a recorded figure when the means differ by at most twice the larger
of the two standard deviations, or by at most `--floor` percentage points (one test
image of digits is 0.28 points): single runs are deterministic on one machine but
not across machines, so the check is within the seed spread. Exit 1 if any figure no
longer matches (or a run failed).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(REPO, "bench", "results", "readme_numbers.json")


class Claim(NamedTuple):
    """One README figure (kind 'main': a config run per seed) or table (kind 'compare')."""
    name: str
    group: str
    kind: str          # 'main' | 'compare'
    args: tuple        # arguments after `python -m jaxquant.<kind>` (no --workdir, no seed)
    seeds: tuple = (0, 1, 2)
    warm_start: str = ""  # name of a 'main' claim whose run of the same seed is config.init_checkpoint


DIGITS_COMPARE = ("fp,ste,bc,bwn,dorefa,dorefa_w2,twn,md_tanh,md_tanh_s,md_softmax_s,pmf,gd_tanh,"
                  "proxquant_binary,proxquant_ternary,metaquant,ldnq")

CLAIMS = (
    Claim("fp_digits", "digits", "main", ("--config", "configs/fp_digits.py")),
    Claim("bc_digits", "digits", "main", ("--config", "configs/bc_digits.py")),
    Claim("md_tanh_s_digits", "digits", "main", ("--config", "configs/md_tanh_s_digits.py")),
    Claim("pmf_digits", "digits", "main", ("--config", "configs/md_tanh_s_digits.py",
                                           "--config.method.name=pmf")),
    Claim("proxquant_binary_digits", "digits", "main",
          ("--config", "configs/proxquant_binary_digits.py")),
    Claim("metaquant_dorefa_sgd_digits", "digits", "main",
          ("--config", "configs/metaquant_dorefa_sgd_digits.py")),
    Claim("ste_dorefa_sgd_digits", "digits", "main", ("--config", "configs/ste_dorefa_sgd_digits.py")),
    Claim("ldnq_digits", "digits", "main", ("--config", "configs/ldnq_digits.py"),
          warm_start="fp_digits"),
    Claim("compare_digits", "digits", "compare",
          ("--config", "configs/fp_digits.py", "--methods", DIGITS_COMPARE)),
)


def command(claim: Claim, workdir: str, seed: int | None, runs: str) -> list[str]:
    """The subprocess argv of one run of `claim` (a comparison runs all its seeds at once)."""
    argv = [sys.executable, "-m", f"jaxquant.{claim.kind}", *claim.args, f"--workdir={workdir}"]
    if claim.kind == "compare":
        return argv + ["--seeds=" + ",".join(map(str, claim.seeds))]
    argv.append(f"--config.seed={seed}")
    if claim.warm_start:
        argv.append(f"--config.init_checkpoint={os.path.join(runs, claim.warm_start, f'seed{seed}')}")
    return argv


def readme_command(claim: Claim) -> str:
    """How the README shows the command (seed and workdir left out)."""
    args = shlex.join(claim.args)
    seeds = ",".join(map(str, claim.seeds))
    extra = f" --seeds={seeds}" if claim.kind == "compare" else f"  # --config.seed={seeds}"
    return f"python -m jaxquant.{claim.kind} {args} --workdir runs/{claim.name}{extra}"


def summary(accuracies: list[float]) -> dict:
    """Mean and sample std (ddof 1; 0 for one value), in percent, with n."""
    pct = [100 * a for a in accuracies]
    return dict(mean=statistics.fmean(pct), std=statistics.stdev(pct) if len(pct) > 1 else 0.0,
                n=len(pct), values=pct)


def run_claim(claim: Claim, runs: str, log) -> dict[str, dict]:
    """{figure name: summary} of `claim` (one figure for 'main', one per row for 'compare')."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    root = os.path.join(runs, claim.name)
    if claim.kind == "compare":
        out = subprocess.run(command(claim, root, None, runs), cwd=REPO, env=env,
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{claim.name}: exit {out.returncode}: {out.stderr[-1500:]}")
        rows = json.load(open(os.path.join(root, "comparison.json")))["rows"]
        return {f"{claim.name}/{r['label']}": summary(r["accuracies"]) for r in rows if r["n"]}
    accs = []
    for seed in claim.seeds:
        workdir = os.path.join(root, f"seed{seed}")
        log(f"  {claim.name} seed {seed}")
        out = subprocess.run(command(claim, workdir, seed, runs), cwd=REPO, env=env,
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{claim.name} seed {seed}: exit {out.returncode}: "
                               f"{out.stderr[-1500:]}")
        accs.append(json.load(open(os.path.join(workdir, "result.json")))["test_accuracy"])
    return {claim.name: summary(accs)}


def matches(new: dict, old: dict, floor: float) -> bool:
    """Whether two figures agree within the seed spread (see the module docstring)."""
    return abs(new["mean"] - old["mean"]) <= max(2 * max(new["std"], old["std"]), floor)


def fmt(fig: dict) -> str:
    return f"{fig['mean']:.2f} ± {fig['std']:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help="comma-separated groups or claim names (default: all)")
    p.add_argument("--runs", default=os.path.join(REPO, "runs", "readme_numbers"),
                   help="where the runs go (a rerun reuses finished runs: delete it to start afresh)")
    p.add_argument("--record", default=RECORD, help="the recorded figures (JSON)")
    p.add_argument("--write", action="store_true", help="record the new figures instead of checking")
    p.add_argument("--floor", type=float, default=0.6, help="smallest tolerance, percentage points")
    args = p.parse_args(argv)
    wanted = {w for w in args.only.split(",") if w}
    claims = [c for c in CLAIMS if not wanted or c.group in wanted or c.name in wanted]
    if not claims:
        print(f"error: --only={args.only!r} names no group or claim; groups: "
              f"{', '.join(sorted({c.group for c in CLAIMS}))}.", file=sys.stderr)
        return 2
    recorded = json.load(open(args.record)) if os.path.exists(args.record) else {}
    figures, failed = {}, []
    for claim in sorted(claims, key=lambda c: bool(c.warm_start)):  # warm starts last
        print(f"{claim.name}: {readme_command(claim)}", flush=True)
        try:
            for name, fig in run_claim(claim, args.runs, lambda s: print(s, flush=True)).items():
                figures[name] = dict(fig, command=readme_command(claim))
        except RuntimeError as e:
            failed.append(str(e))
            print(f"  FAILED: {e}", flush=True)
    if args.write:
        recorded.update(figures)
        os.makedirs(os.path.dirname(args.record), exist_ok=True)
        with open(args.record, "w") as f:
            json.dump(recorded, f, indent=1, sort_keys=True)
        print(f"recorded {len(figures)} figures in {args.record}")
        return 1 if failed else 0
    bad = 0
    print("\n| figure | recorded | rerun | agrees |\n|---|---|---|---|")
    for name, fig in figures.items():
        old = recorded.get(name)
        ok = old is not None and matches(fig, old, args.floor)
        bad += not ok
        print(f"| {name} | {fmt(old) if old else 'not recorded'} | {fmt(fig)} | "
              f"{'yes' if ok else 'NO'} |")
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
