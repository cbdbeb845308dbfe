"""Method comparison (`python -m jaxquant.compare`) and the benchmark scripts."""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_config
from jaxquant import compare, export, methods


def tiny_base():
    c = load_config("fp_digits")
    c.model.features = (32,)
    c.train.update(epochs=2, batch_size=64, log_every_steps=11, eval_every_steps=11)
    return c


def test_presets_and_overrides_become_method_configs():
    specs = compare.parse_specs("bc,dorefa:weight_bits=2:detach_max=True,ste:optimizer.lr=0.1,"
                                "twn:quant.exclude=('head/.*',)")
    assert [s.label for s in specs] == ["bc", "dorefa-weight_bits=2-detach_max=True",
                                        "ste-optimizer.lr=0.1", "twn-quant.exclude=__head_.____"]
    base, budget = tiny_base(), compare.Budget(600, 20)
    bc, dorefa, ste, twn = (compare.method_config(base, s, budget, "w") for s in specs)
    assert bc.method.to_dict() == dict(name="binary_connect", variant="md_bnn")
    assert dorefa.method.to_dict() == dict(name="dorefa", weight_bits=2, detach_max=True)
    assert ste.optimizer.lr == 0.1 and ste.method.quantizer == "sign"
    assert tuple(twn.quant.exclude) == ("head/.*",)
    assert base.method.to_dict() == dict(name="fp") and base.optimizer.lr == 3e-3  # untouched


def test_annealing_preset_reaches_its_final_beta_at_the_end_of_the_budget():
    # beta_t = bts^ceil(t / bti): 100 increases over 600 steps -> bti 6, bts = 1e4^(1/100)
    cfg = compare.method_config(tiny_base(), compare.parse_specs("pmf")[0],
                                compare.Budget(600, 20), "w").method
    assert cfg.bti == 6 and cfg.bts ** math.ceil(600 / cfg.bti) == pytest.approx(1e4, rel=1e-3)
    # ProxQuant lambda_t = reg_rate * epoch: freeze at 2/3 of 31 epochs, and the paper's
    # accumulated strength reg_rate * steps_per_epoch * freeze^2 (1e-4 * 390 * 200^2)
    pq = compare.method_config(tiny_base(), compare.parse_specs("proxquant_binary")[0],
                               compare.Budget(620, 20), "w").method
    assert pq.kind == "binary" and pq.freeze_epoch == 21
    assert pq.reg_rate * 20 * 21 ** 2 == pytest.approx(1e-4 * 390 * 200 ** 2, rel=1e-2)
    # ... times lr: a base lr 10x below the paper's Adam 0.01 needs a 10x reg_rate
    slow = compare.method_config(tiny_base(), compare.parse_specs("proxquant_binary")[0],
                                 compare.Budget(620, 20, 1e-3), "w").method
    assert slow.reg_rate == pytest.approx(10 * pq.reg_rate, rel=1e-2)


def test_compare_writes_one_row_per_method_with_export_sizes_and_a_curve_plot(tmp_path, monkeypatch):
    # a registered method whose family module is absent must become an error row
    monkeypatch.setitem(methods._FAMILIES, "not_yet", "no_such_family")
    lines = []
    rows = compare.compare(tiny_base(), "fp,bc,not_yet", str(tmp_path), echo=lines.append)
    assert [r["label"] for r in rows] == ["fp", "bc", "not_yet"]
    fp, bc, missing = rows
    assert fp["error"] is None and bc["error"] is None
    assert "jaxquant.methods.no_such_family" in missing["error"]
    assert fp["bits"] == "32" and bc["bits"] == "1"
    # sizes are the export's: binary kernels packed 1 bit per weight, everything else fp32
    manifest = export.read_manifest(str(tmp_path / "bc" / "export"))
    assert bc["bytes"] == sum(export.stored_bytes(e) for e in manifest["tensors"])
    n_kernel = 64 * 32 + 32 * 10
    assert fp["bytes"] - bc["bytes"] == 4 * n_kernel - (n_kernel // 8 + 2 * 2 * 4)
    assert bc["compression"] == pytest.approx(fp["bytes"] / bc["bytes"])
    assert 0.5 < bc["test_accuracy"] <= 1 and 0.5 < fp["test_accuracy"] <= 1
    result = json.load(open(tmp_path / "bc" / "result.json"))
    assert bc["test_accuracy"] == result["test_accuracy"]
    table = (tmp_path / "comparison.md").read_text().splitlines()
    body = [l for l in table if l.startswith("| ") and not l.startswith("| method")]
    assert [l.split("|")[1].strip() for l in body] == ["fp", "bc", "not_yet"]
    assert f"{100 * bc['test_accuracy']:.2f}" in body[1] and "error" in body[2]
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    # which method of how many is running, on its start line and on each progress line
    assert "[2/3] bc: config.method=" in "\n".join(lines)
    assert any(l.startswith("  [2/3] bc: step 44/44: ") for l in lines)

    # rerunning reuses the finished runs instead of retraining them
    again = compare.compare(tiny_base(), "fp,bc", str(tmp_path), echo=lines.append)
    assert [r["test_accuracy"] for r in again] == [fp["test_accuracy"], bc["test_accuracy"]]
    assert sum("reusing" in l for l in lines) == 2


def _cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "jaxquant.compare", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_unknown_preset_exits_2_listing_the_valid_ones(tmp_path):
    out = _cli("--config", "configs/fp_digits.py", "--methods", "fp,md_tanhs",
               "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    for word in ("md_tanhs", "md_tanh_s", "proxquant_binary", "bc", "Did you mean"):
        assert word in out.stderr, (word, out.stderr)
    assert not (tmp_path / "w").exists()  # nothing trained


def test_malformed_override_is_a_user_error():
    with pytest.raises(compare.CompareError, match="name:key=value"):
        compare.parse_specs("dorefa:weight_bits")
    with pytest.raises(compare.CompareError, match="more than once"):
        compare.parse_specs("fp,bc,fp")


@pytest.mark.slow
def test_bench_scripts_write_json_and_markdown(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    runs = (("step_time.py", ["--models", "mlp,resnet20", "--methods", "fp,bc,md_tanh_s"]),
            ("scaling.py", ["--models", "mlp", "--methods", "fp,bc", "--devices", "1,2"]))
    for script, extra in runs:
        out = subprocess.run([sys.executable, os.path.join("bench", script), "--out", str(tmp_path),
                              "--rounds", "2", "--steps", "1", "--threads", "1", *extra], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=1800)
        assert out.returncode == 0, out.stderr[-3000:]
    rows = json.load(open(tmp_path / "step_time.json"))["rows"]
    by = {(r["model"], r["method"]): r for r in rows}
    assert by[("mlp", "fp")]["ratio_vs_fp"] == 1.0 and by[("mlp", "bc")]["step_ms"] > 0
    assert by[("mlp", "bc")]["images_per_s"] == pytest.approx(32e3 / by[("mlp", "bc")]["step_ms"])
    # a method whose module is missing is a note, a present one a timing
    assert ("step_ms" in by[("mlp", "md_tanh_s")]) == (methods_module_exists("mirror"))
    assert (tmp_path / "step_time.md").exists() and (tmp_path / "scaling.md").exists()
    scaling = json.load(open(tmp_path / "scaling.json"))["rows"]
    assert sorted({r["devices"] for r in scaling}) == [1, 2]


def methods_module_exists(name):
    import importlib.util
    return importlib.util.find_spec(f"jaxquant.methods.{name}") is not None


def test_select_best_without_a_validation_split_reports_the_last_step(tmp_path):
    # the trainer only selects on a validation split; the row must not claim a selection
    base = tiny_base()
    base.dataset.validation = 0
    base.train.select_best = True
    (row,) = compare.compare(base, "bc", str(tmp_path), echo=lambda _: None)
    result = json.load(open(tmp_path / "bc" / "result.json"))
    assert result["best_val_accuracy"] is None and not row["select_best"]
    assert row["test_accuracy"] == result["final_test_accuracy"]
    assert "best val" not in (tmp_path / "comparison.md").read_text()


# ------------------------------------------------------------- --seeds: mean ± std over seeds

def test_seeds_flag_is_a_count_or_a_list():
    assert compare.parse_seeds("") is None
    assert compare.parse_seeds("3") == [0, 1, 2]
    assert compare.parse_seeds("0,2,5") == [0, 2, 5]
    for bad in ("0", "x", "0,0", "-1,2", "1.5"):
        with pytest.raises(compare.CompareError, match="--seeds"):
            compare.parse_seeds(bad)


def test_summary_is_the_mean_and_sample_std_over_the_finished_seeds():
    def run(label, seed, acc=None, error=None):
        return dict(label=label, method="bc", method_config={"name": "bc"}, seed=seed,
                    workdir=f"w/{label}/seed{seed}", error=error, test_accuracy=acc,
                    seconds=10.0, select_best=False, bits="1", bytes=100, float32_bytes=3200,
                    compression=32.0, quantized_fraction=1.0)
    runs = [run("bc", 0, 0.90), run("fp", 0, 0.97), run("bc", 1, 0.80), run("fp", 1, 0.95),
            run("bc", 2, 0.85), run("fp", 2, error="diverged")]
    bc, fp = compare.summarize(runs)
    # by hand: mean(0.90, 0.80, 0.85) = 0.85; sum of squares 0.005 / (3 - 1) -> std 0.05
    assert bc["n"] == 3 and bc["test_accuracy"] == pytest.approx(0.85)
    assert bc["std"] == pytest.approx(0.05) and bc["error"] is None
    assert bc["accuracies"] == [0.90, 0.80, 0.85] and bc["seeds"] == [0, 1, 2]
    # the failed seed is left out of the statistics and named
    assert fp["n"] == 2 and fp["test_accuracy"] == pytest.approx(0.96)
    assert fp["std"] == pytest.approx(0.02 / math.sqrt(2)) and "seed 2: diverged" in fp["error"]
    # one seed: no spread
    (one,) = compare.summarize([run("bc", 4, 0.5)])
    assert one["std"] is None and one["n"] == 1


def test_warm_start_preset_reads_the_run_of_the_same_seed():
    base, budget = tiny_base(), compare.Budget(600, 20)
    (spec,) = compare.parse_specs("ldnq")
    assert compare.method_config(base, spec, budget, "w").init_checkpoint == os.path.join("w", "fp")
    cfg = compare.method_config(base, spec, budget, "w", seed=2)
    assert cfg.init_checkpoint == os.path.join("w", "fp", "seed2") and cfg.seed == 2


def test_compare_over_seeds_trains_each_method_per_seed_and_reports_mean_and_std(tmp_path):
    base = tiny_base()
    base.train.update(epochs=1)
    lines = []
    rows = compare.compare(base, "fp,bc", str(tmp_path), seeds=[0, 3], echo=lines.append)
    assert [r["label"] for r in rows] == ["fp", "bc"]
    for r in rows:
        accs = []
        for seed in (0, 3):
            run = tmp_path / r["label"] / f"seed{seed}"
            assert json.load(open(run / "config.json"))["seed"] == seed
            accs.append(json.load(open(run / "result.json"))["test_accuracy"])
        assert r["n"] == 2 and r["test_accuracy"] == pytest.approx((accs[0] + accs[1]) / 2)
        assert r["std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
    out = json.load(open(tmp_path / "comparison.json"))
    assert out["seeds"] == [0, 3] and len(out["runs"]) == 4
    assert [(r["label"], r["seed"]) for r in out["runs"]] == [("fp", 0), ("bc", 0), ("fp", 3), ("bc", 3)]
    table = (tmp_path / "comparison.md").read_text()
    bc = rows[1]
    assert f"{100 * bc['test_accuracy']:.2f} ± {100 * bc['std']:.2f} | 2 |" in table
    assert "seeds 0, 3" in table
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert any(l.startswith("[4/4] bc seed 3:") for l in lines)


def test_bad_seeds_flag_exits_2_before_training(tmp_path):
    out = _cli("--config", "configs/fp_digits.py", "--methods", "fp", "--seeds", "0,0",
               "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2 and "--seeds" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "w").exists()


def test_a_model_key_the_file_does_not_set_can_be_overridden_and_a_misspelt_one_is_named(tmp_path):
    # fp_digits.py sets no model.bn_eps: the --config flag completes the model section as
    # jaxquant.main's does, so the override parses and the run stops only at the bad preset
    out = _cli("--config", "configs/fp_digits.py", "--config.model.bn_eps=0.001",
               "--methods", "fp,md_tanhs", "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2 and "md_tanhs" in out.stderr and "bn_eps" not in out.stderr
    out = _cli("--config", "configs/fp_digits.py", "--config.model.bn_epz=0.001",
               "--methods", "fp", "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "bn_epz" in out.stderr and "Did you mean config.model.bn_eps?" in out.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_method_folder_holding_foreign_files_is_an_error_row_and_nothing_is_deleted(
        tmp_path, overwrite):
    (tmp_path / "fp").mkdir()
    (tmp_path / "fp" / "notes.txt").write_text("mine")
    rows = compare.compare(tiny_base(), "fp", str(tmp_path), overwrite=overwrite,
                           echo=lambda s: None)
    assert "notes.txt" in rows[0]["error"] and "Nothing was changed" in rows[0]["error"]
    assert (tmp_path / "fp" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "fp" / "checkpoints").exists()
