"""End to end: train bc_digits, export it, evaluate the export (CLI included)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_config
from jaxquant import evaluate, export, train


@pytest.fixture(scope="module")
def bc_digits_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("bc_digits"))
    result = train.train_and_evaluate(load_config("bc_digits"), workdir, log=lambda *_: None)
    return workdir, result


def test_bc_digits_binary_mlp_reaches_95_percent(bc_digits_run):
    workdir, result = bc_digits_run
    assert result["test_accuracy"] >= 0.95
    summary = open(os.path.join(workdir, "summary.txt")).read()
    assert "dense1/kernel  (256, 256)     1       65,536        8,200" in summary


def test_export_then_evaluate_reproduces_the_training_accuracy_exactly(bc_digits_run):
    workdir, result = bc_digits_run
    out = export.export_run(workdir)
    manifest = json.load(open(os.path.join(out, export.MANIFEST)))
    kernels = [t for t in manifest["tensors"] if t["name"].endswith("kernel")]
    assert kernels and all(t["bits"] == 1 and t["encoding"] == "packed" for t in kernels)
    assert manifest["info"]["training_test_accuracy"] == result["final_test_accuracy"]
    got = evaluate.evaluate_export(out)
    assert got["accuracy"] == result["final_test_accuracy"]
    assert got["step"] == result["step"]


def _cli(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)


@pytest.mark.slow
def test_evaluate_cli_reports_a_match_and_rejects_a_corrupted_export(bc_digits_run, tmp_path):
    workdir, result = bc_digits_run
    out = str(tmp_path / "export")
    p = _cli("jaxquant.export", f"--workdir={workdir}", f"--out={out}")
    assert p.returncode == 0, p.stderr
    assert "compression" in p.stdout
    p = _cli("jaxquant.evaluate", f"--export={out}")
    assert p.returncode == 0, p.stderr
    assert f"{100 * result['final_test_accuracy']:.2f}%" in p.stdout and "matches" in p.stdout
    blob = os.path.join(out, export.BLOB)
    with open(blob, "r+b") as f:
        f.truncate(100)
    p = _cli("jaxquant.evaluate", f"--export={out}")
    assert p.returncode == 2 and f"{blob} is truncated" in p.stderr


@pytest.mark.slow
def test_export_of_a_dorefa_run_packs_two_bit_kernels(tmp_path):
    c = load_config("bc_digits")
    c.method = dict(name="dorefa", weight_bits=2)
    c.model.update(features=(32,), act_bits=2)
    c.train.update(steps=10, epochs=0, eval_every_steps=10)
    result = train.train_and_evaluate(c, str(tmp_path), log=lambda *_: None)
    out = export.export_run(str(tmp_path))
    manifest = json.load(open(os.path.join(out, export.MANIFEST)))
    bits = {t["name"]: t["bits"] for t in manifest["tensors"] if t["collection"] == "params"}
    assert bits["stem/kernel"] == 2 and bits["head/kernel"] == 2 and bits["stem/bias"] == 32
    assert evaluate.evaluate_export(out)["accuracy"] == result["final_test_accuracy"]
