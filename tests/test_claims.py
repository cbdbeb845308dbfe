"""bench/claims.py: the claims table's experiments, its holds-here rule and its summary."""
import json
import math
import os
import runpy
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import claims as cl  # noqa: E402


def _side(mean, std, n):
    return dict(mean=mean, std=std, n=n)


def test_the_verdict_is_the_difference_against_twice_its_standard_error():
    # by hand: se = sqrt(0.3^2/3 + 0.4^2/3) = sqrt(0.25/3) = 0.288675..., 2se = 0.57735
    b = _side(87.0, 0.4, 3)
    ahead, tie, behind = _side(88.0, 0.3, 3), _side(87.5, 0.3, 3), _side(86.0, 0.3, 3)
    assert cl.verdict(ahead, b, ">") == ("yes", "d = +1.00 vs 2se = 0.58: ahead")
    assert cl.verdict(tie, b, ">") == ("no", "d = +0.50 vs 2se = 0.58: tie")
    assert cl.verdict(tie, b, ">=")[0] == "yes" and cl.verdict(ahead, b, ">=")[0] == "yes"
    assert cl.verdict(behind, b, ">=") == ("no", "d = -1.00 vs 2se = 0.58: behind")
    assert cl.verdict(tie, b, "~")[0] == "yes"
    assert cl.verdict(ahead, b, "~")[0] == "no" and cl.verdict(behind, b, "~")[0] == "no"
    # L-DNQ vs FP: the gap in means against a fixed number of points
    assert cl.verdict(_side(88.46, 0.1, 3), _side(90.93, 0.1, 3), "within:3") == (
        "yes", "gap 2.47 points <= 3")
    assert cl.verdict(_side(88.46, 0.1, 3), _side(90.93, 0.1, 3), "within:2")[0] == "no"
    # one seed on a side: no spread, no verdict
    assert cl.verdict(_side(88.0, None, 1), b, ">=")[0] == "n < 2"


def test_a_comparison_row_becomes_percent_with_its_n():
    row = dict(test_accuracy=0.8875, std=0.0025, n=3)
    assert cl.side(row) == pytest.approx(dict(mean=88.75, std=0.25, n=3))
    assert cl.side(dict(test_accuracy=0.9, std=None, n=1))["std"] is None


def test_the_md_tanh_s_schedule_ends_where_the_papers_does():
    from jaxquant.compare import budget_of
    exp = next(e for e in cl.EXPERIMENTS if cl.MD_TANH_S in e.methods)
    steps = budget_of(runpy.run_path(os.path.join(REPO, exp.config))["get_config"]()).total_steps
    opts = dict(kv.split("=") for kv in cl.MD_TANH_S.split(":")[1:])
    bts, bti = float(opts["bts"]), int(opts["bti"])
    increases = math.ceil(steps / bti)           # beta_t = bts^ceil(t / bti) at the last step
    assert 195 <= increases <= 210                # the paper's 100k / 500 = 200 increases
    # beta_end = 1.2^200 (the paper's 1.2 every 500 of 100k iterations), to 1%
    assert increases * math.log(bts) == pytest.approx(200 * math.log(1.2), rel=1e-3)


def test_every_claim_compares_two_methods_of_its_experiment():
    experiments = {e.name: e for e in cl.EXPERIMENTS}
    assert len(experiments) == len(cl.EXPERIMENTS)
    assert len({c.name for c in cl.CLAIMS}) == len(cl.CLAIMS)
    for e in cl.EXPERIMENTS:
        assert os.path.exists(os.path.join(REPO, e.config)), e.config
        labels = [cl.label(m) for m in e.methods]     # parses every entry, presets included
        assert len(labels) == len(set(labels))
    for c in cl.CLAIMS:
        ea, eb = experiments[c.experiment], experiments[c.b_experiment or c.experiment]
        assert c.a in ea.methods and c.b in eb.methods, c
        # a side from another experiment: the same base config, budget and seeds
        assert (ea.config, ea.overrides, ea.seeds) == (eb.config, eb.overrides, eb.seeds), c
        assert c.relation in (">", ">=", "~") or c.relation.startswith("within:")


def _comparison(rows):
    return dict(rows=[dict(label=lab, test_accuracy=m, std=s, n=n) for lab, m, s, n in rows])


def test_the_table_holds_each_claims_sides_and_verdict(monkeypatch):
    exp = cl.Experiment("e", "configs/fp_digits.py", ("fp", "bc", "ste"))
    monkeypatch.setattr(cl, "EXPERIMENTS", (exp,))
    monkeypatch.setattr(cl, "CLAIMS", (cl.Claim("bc_vs_ste", "BC ≥ STE", "e", "bc", "ste", ">="),
                                       cl.Claim("fp_vs_bc", "FP > BC", "e", "fp", "bc", ">"),
                                       cl.Claim("twn_vs_bc", "TWN ≈ BC", "f", "twn", "bc", "~", "e")))
    lines = cl.table({"e": _comparison([("bc", 0.88, 0.003, 3), ("ste", 0.87, 0.004, 3)]),
                      "f": _comparison([("twn", 0.8775, 0.001, 2)])})
    assert lines[2] == ("| BC ≥ STE | e | `bc` | `ste` | 88.00 ± 0.30 (n=3) | 87.00 ± 0.40 (n=3) | "
                        "yes | d = +1.00 vs 2se = 0.58: ahead |")
    assert lines[3].endswith("| – | – | not run | |")  # fp has no row
    # B from another experiment; by hand 2se = 2 sqrt(0.1^2/2 + 0.3^2/3) = 2 sqrt(0.035) = 0.3742
    assert lines[4] == ("| TWN ≈ BC | f / e | `twn` | `bc` | 87.75 ± 0.10 (n=2) | 88.00 ± 0.30 (n=3) | "
                        "yes | d = -0.25 vs 2se = 0.37: tie |")
    assert cl.table({})[2].endswith("not run | |")


def test_a_tiny_experiment_runs_and_is_summarized(tmp_path, monkeypatch):
    exp = cl.Experiment("tiny", "configs/fp_digits.py", ("fp", "bc"),
                        ("--config.train.steps=3", "--config.train.eval_every_steps=3"), seeds=2)
    monkeypatch.setattr(cl, "EXPERIMENTS", (exp,))
    monkeypatch.setattr(cl, "CLAIMS", (cl.Claim("fp_vs_bc", "FP ≥ BC", "tiny", "fp", "bc", ">="),))
    out = tmp_path / "out"
    assert cl.main(["--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    comparison = json.load(open(out / "tiny.json"))
    accs = {r["label"]: [100 * a for a in r["accuracies"]] for r in comparison["rows"]}
    assert sorted(r["seed"] for r in comparison["runs"]) == [0, 0, 1, 1]
    text = (out / "claims.md").read_text()
    fp = sum(accs["fp"]) / 2, abs(accs["fp"][0] - accs["fp"][1]) / math.sqrt(2)
    assert f"| {fp[0]:.2f} ± {fp[1]:.2f} (n=2) |" in text
    assert "--seeds=2 --config.train.steps=3" in text and (out / "tiny.png").exists()
    assert cl.main(["--only", "nope"]) == 2
