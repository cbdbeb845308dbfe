"""bench/readme_numbers.py: the README's CPU figures, rerun over seeds and checked."""
import json
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import readme_numbers as rn  # noqa: E402


def test_a_figure_is_the_mean_and_sample_std_in_percent():
    fig = rn.summary([0.90, 0.80, 0.85])
    # by hand: mean 85.0; squared deviations 25 + 25 + 0 over n - 1 = 2 -> std 5.0
    assert fig["mean"] == pytest.approx(85.0) and fig["std"] == pytest.approx(5.0)
    assert fig["n"] == 3 and rn.summary([0.5])["std"] == 0.0


def test_figures_agree_within_twice_the_larger_spread_or_the_floor():
    old = dict(mean=97.0, std=0.5)
    assert rn.matches(dict(mean=97.9, std=0.2), old, floor=0.6)       # 0.9 <= 2 * 0.5
    assert not rn.matches(dict(mean=98.1, std=0.2), old, floor=0.6)   # 1.1 > 1.0
    assert rn.matches(dict(mean=96.5, std=0.0), dict(mean=97.0, std=0.0), floor=0.6)
    assert not rn.matches(dict(mean=96.3, std=0.0), dict(mean=97.0, std=0.0), floor=0.6)


def test_every_recorded_figure_is_quoted_in_the_readme():
    if not os.path.exists(rn.RECORD):
        pytest.skip("no figures recorded yet (python bench/readme_numbers.py --write)")
    readme = open(os.path.join(REPO, "README.md")).read()
    for name, fig in json.load(open(rn.RECORD)).items():
        assert rn.fmt(fig) in readme, (name, rn.fmt(fig))


def test_claims_name_existing_configs_and_unique_figures():
    names = [c.name for c in rn.CLAIMS]
    assert len(names) == len(set(names))
    for c in rn.CLAIMS:
        config = c.args[c.args.index("--config") + 1]
        assert os.path.exists(os.path.join(REPO, config)), config
        assert not c.warm_start or c.warm_start in names


@pytest.mark.slow  # ~35 s: trains twice; the README-vs-record check stays in CI
def test_a_rerun_of_a_tiny_claim_checks_against_what_was_written(tmp_path, monkeypatch):
    claim = rn.Claim("tiny_digits", "tiny", "main",
                     ("--config", "configs/bc_digits.py", "--config.train.epochs=1"), seeds=(0, 1))
    monkeypatch.setattr(rn, "CLAIMS", (claim,))
    record, runs = str(tmp_path / "record.json"), str(tmp_path / "runs")
    assert rn.main(["--only", "tiny", "--runs", runs, "--record", record, "--write"]) == 0
    fig = json.load(open(record))["tiny_digits"]
    accs = [100 * json.load(open(os.path.join(runs, "tiny_digits", f"seed{s}", "result.json")))
            ["test_accuracy"] for s in (0, 1)]
    assert fig["values"] == pytest.approx(accs)
    assert fig["mean"] == pytest.approx(sum(accs) / 2)
    assert fig["std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
    assert "--config.seed=0,1" in fig["command"]
    # the same runs agree with themselves; a tampered record does not
    assert rn.main(["--only", "tiny", "--runs", runs, "--record", record]) == 0
    json.dump({"tiny_digits": dict(fig, mean=fig["mean"] + 5, std=0.0)}, open(record, "w"))
    assert rn.main(["--only", "tiny", "--runs", runs, "--record", record]) == 1


@pytest.mark.slow
def test_the_digits_figures_of_the_readme_still_hold():
    out = subprocess.run([sys.executable, os.path.join("bench", "readme_numbers.py"),
                          "--only", "digits"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_the_readme_digits_table_agrees_with_the_record_within_the_spread():
    if not os.path.exists(rn.RECORD):
        pytest.skip("no figures recorded yet (python bench/readme_numbers.py --write)")
    record = json.load(open(rn.RECORD))
    figures = {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("compare_digits/")}
    readme = open(os.path.join(REPO, "README.md")).read()
    start = readme.index("--workdir runs/compare_digits")
    table = readme[start:readme.index("\n\n", readme.index("\n| method |", start) + 1)]
    rows = re.findall(r"^\| (\w+) \| (\d+\.\d\d) ± (\d+\.\d\d) \|", table, re.M)
    assert sorted(label for label, _, _ in rows) == sorted(figures)
    for label, mean, std in rows:
        assert rn.matches(dict(mean=float(mean), std=float(std)), figures[label], floor=0.6), label
