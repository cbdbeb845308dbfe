"""The benchmark harness: round-robin timing, same-round ratios, the PyTorch references."""
import os
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import common  # noqa: E402
import step_time  # noqa: E402

from jaxquant import compare, models  # noqa: E402


def test_interleaved_rotates_the_order_by_one_each_round():
    calls = []
    timers = {n: (lambda k, n=n: calls.append(n) or 1.0) for n in "abc"}
    times = common.interleaved(timers, rounds=3, steps=2)
    assert calls == list("abc" "bca" "cab")
    assert times == {n: [1.0, 1.0, 1.0] for n in "abc"}


def test_median_ratio_pairs_each_round_with_its_own_reference():
    times = {"fp": [1.0, 4.0, 2.0], "q": [1.5, 4.4, 1.0]}
    # per-round ratios 1.5, 1.1, 0.5 -> median 1.1; ratio of medians would be 1.5 / 2 = 0.75
    assert common.median_ratio(times, "q", "fp") == pytest.approx(1.1)


def test_step_time_rows_for_the_mlp():
    args = types.SimpleNamespace(batch=8, rounds=2, steps=1, threads=0, no_torch=True)
    specs = compare.parse_specs("fp,ste,pdqat")
    rows = {r["method"]: r for r in step_time.bench_model("mlp", specs, args, log=lambda s: None)}
    assert rows["fp"]["ratio_vs_fp"] == 1.0
    assert rows["ste"]["ratio_vs_fp"] > 0 and len(rows["ste"]["step_ms_all"]) == 2
    assert rows["ste"]["images_per_s"] == pytest.approx(8 / (rows["ste"]["step_ms"] / 1e3))
    assert rows["ste"]["compile_s"] > 0 and rows["ste"]["step_bytes"] > 0
    assert "resnet20q" in rows["pdqat"]["note"]  # skipped with the reason, not a crash
    table = step_time.markdown(list(rows.values()), common.machine(), args)
    assert table.count("| mlp |") == 3


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_torch_reference_has_the_parameter_tensors_of_the_jaxquant_model(name):
    torch_resnet = pytest.importorskip("torch_resnet")
    torch_sizes = sorted(p.numel() for p in torch_resnet.MODELS[name]().parameters())
    cfg = ml_collections.ConfigDict(dict(common.MODELS[name][0]))
    model = models.build(cfg, 10)
    v = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                          train=False))
    jax_sizes = sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(v["params"]))
    assert torch_sizes == jax_sizes


def test_summary_pivots_ratios_and_a_later_file_overrides_per_method(tmp_path):
    import json
    import summary

    def run(name, rows):
        path = tmp_path / name
        path.write_text(json.dumps(dict(rows=rows)))
        return str(path)

    row = lambda model, method, ratio, ms=10.0: dict(  # noqa: E731
        model=model, method=method, ratio_vs_fp=ratio, step_ms=ms, batch=32)
    full = run("full.json", [row("r20", "fp", 1.0, 375.0), row("r20", "pmf", 1.5),
                             row("r20", "bc", 0.97), dict(model="r20", method="x", note="skipped"),
                             row("mlp", "fp", 1.0, 2.61), row("mlp", "pmf", 2.4)])
    focused = run("focused.json", [row("r20", "fp", 1.0, 380.0), row("r20", "pmf", 1.02)])
    lines = summary.table(*summary.load([full, focused])).splitlines()
    assert lines[0] == "| method | r20 | mlp |"
    assert lines[2] == "| fp step (ms), batch | 380, 32 | 2.61, 32 |"
    assert "| pmf | 1.02 | 2.40 |" in lines and "| bc | 0.97 | – |" in lines
    assert not any(line.startswith("| x ") for line in lines)
    assert lines[-1] == "| source | focused.json, full.json | full.json |"


# ------------------------------------------------------------- trainer overhead, start-up, GPU check

def test_bare_loop_models_have_the_parameter_tensors_of_the_jaxquant_models():
    import bare_loop
    for name, shape in (("mlp", (28, 28, 1)), ("resnet20", (32, 32, 3))):
        x = jnp.zeros((1, *shape))
        bare = bare_loop.flax_model(name)
        v = jax.eval_shape(lambda: bare.init(jax.random.PRNGKey(0), x, train=False))
        cfg = ml_collections.ConfigDict(dict(common.MODELS[name][0]))
        w = jax.eval_shape(lambda: models.build(cfg, 10).init(jax.random.PRNGKey(0), x, train=False))
        for coll in ("params", "batch_stats"):
            sizes = lambda t: sorted(tuple(a.shape) for a in jax.tree.leaves(t[coll]))  # noqa: E731
            assert sizes(v) == sizes(w), (name, coll)


def test_trainer_overhead_ratios_pair_each_round_and_shares_come_from_the_timing():
    import trainer_overhead as to
    run = lambda wall, cpu, train, steps=10, acc=0.9, **kw: dict(  # noqa: E731
        wall_s=wall, cpu_s=cpu, train_s=train, steps=steps, compile_s=1.0, test_accuracy=acc, **kw)
    timing = dict(setup_s=1.0, data_s=0.0, compile_s=2.0, train_s=5.0, log_s=0.0, eval_s=1.0,
                  checkpoint_s=0.5, final_s=0.5)
    runs = dict(jaxquant=[run(12.0, 10.0, 5.0, timing=timing), run(30.0, 11.0, 6.0, timing=timing)],
                bare=[run(10.0, 10.0, 5.0), run(20.0, 10.0, 4.0)],
                torch=[run(10.0, 8.0, 5.0), run(40.0, 22.0, 4.0)])
    s = to.summarize(runs)
    # against PyTorch: 12/10 and 30/40 -> 0.975 (the ratio of medians would be 21 / 25 = 0.84)
    assert s["jaxquant"]["wall_vs_torch"] == pytest.approx(0.975)
    assert s["jaxquant"]["cpu_vs_torch"] == pytest.approx((10 / 8 + 11 / 22) / 2)
    assert "wall_vs_torch" not in s["torch"]
    # per-round ratios 1.2 and 1.5 -> 1.35 (the ratio of medians would be 21 / 15 = 1.4)
    assert s["jaxquant"]["wall_ratio"] == pytest.approx(1.35)
    assert s["jaxquant"]["cpu_ratio"] == pytest.approx(1.05)
    assert s["jaxquant"]["step_ratio"] == pytest.approx((1.0 + 1.5) / 2)
    assert s["bare"]["wall_ratio"] == 1.0
    shares = s["jaxquant"]["share_of_wall"]
    # train 5 s of 12 s and 30 s walls -> median of 5/12 and 5/30
    assert shares["train_s"] == pytest.approx((5 / 12 + 5 / 30) / 2)
    assert shares["imports_and_rest"] == pytest.approx(1 - sum(v for k, v in shares.items()
                                                                if k != "imports_and_rest"))


def test_compilation_cache_directory_follows_the_flag_then_the_environment(monkeypatch, tmp_path):
    from jaxquant import main as cli
    monkeypatch.delenv(cli.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cli.compilation_cache_dir(None) == str(tmp_path / "xdg" / "jaxquant" / "jax")
    monkeypatch.setenv(cli.CACHE_ENV, str(tmp_path / "env"))
    assert cli.compilation_cache_dir(None) == str(tmp_path / "env")
    assert cli.compilation_cache_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")
    for off in ("off", "OFF", "", "none", "0"):
        assert cli.compilation_cache_dir(off) is None
    monkeypatch.setenv(cli.CACHE_ENV, "off")
    assert cli.compilation_cache_dir(None) is None


def test_a_repeated_cli_run_reads_its_train_step_from_the_compilation_cache(tmp_path):
    import json
    import subprocess
    import sys
    from conftest import REPO
    cache = tmp_path / "cache"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO, JAXQUANT_COMPILATION_CACHE=str(cache))
    cmd = [sys.executable, "-m", "jaxquant.main", "--config", "configs/fp_digits.py", "--overwrite",
           "--config.model.features=(16,)", "--config.train.steps=2"]
    results = []
    for run in ("first", "second"):
        out = subprocess.run(cmd + ["--workdir", str(tmp_path / run)], cwd=REPO, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        results.append(json.loads((tmp_path / run / "result.json").read_text()))
        if run == "first":
            entries = set(os.listdir(cache))
            assert any(e.startswith("jit_run") for e in entries), entries  # the train step
    assert set(os.listdir(cache)) == entries  # the second run compiled nothing new
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]


def test_gpu_check_dry_run_writes_every_result(tmp_path):
    import json
    import subprocess
    import sys
    from conftest import REPO
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    out = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", "--out", str(tmp_path),
                          "--prefix", "dry"], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    for part in ("step_time", "data", "train", "lm_step_time"):
        assert (tmp_path / f"dry_{part}.md").read_text().startswith("# ")
    lm = json.loads((tmp_path / "dry_lm_step_time.json").read_text())["rows"]
    assert {r["method"] for r in lm if "step_ms" in r} == {"fp", "bitnet", "md_tanh_s_ternary"}
    assert all(r["tokens_per_s"] == pytest.approx(16 * r["images_per_s"]) for r in lm)
    steps = json.loads((tmp_path / "dry_step_time.json").read_text())["rows"]
    assert {r["method"] for r in steps if "step_ms" in r} >= {"fp", "bc"}
    data = json.loads((tmp_path / "dry_data.json").read_text())
    assert data["images"] == 60 and data["augment_images_per_s"] > 0 and data["trainer_step_ms"] > 0
    trained = {r["method"]: r for r in json.loads((tmp_path / "dry_train.json").read_text())["rows"]}
    assert set(trained) == {"fp", "bc"}
    for r in trained.values():  # one epoch of 40 images at batch 8: one evaluation
        assert r["steps"] == 5 and len(r["test_accuracy_per_epoch"]) == 1
        assert 0.0 <= r["test_accuracy"] <= 1.0


def test_logged_train_loss_is_the_mean_over_the_steps_since_the_last_log_and_timing_adds_up(tmp_path):
    from conftest import load_config
    from jaxquant import parallel, train
    from jaxquant.metrics import read_metrics
    c = load_config("fp_digits")
    c.model.features = (16,)
    c.train.update(steps=4, batch_size=256, log_every_steps=2, eval_every_steps=4)
    result = train.train_and_evaluate(c, str(tmp_path), log=lambda *_: None)
    logged = {r["step"]: r["train_loss"] for r in read_metrics(str(tmp_path))}
    # the same steps by hand: the plain step function on the trainer's batches
    exp = train.build_experiment(c)
    state = jax.device_put(train.init_state(exp), parallel.replicated(exp.mesh))
    step = jax.jit(train.make_train_step(exp))
    batches = train._Batches(exp)
    losses = []
    for s in range(4):
        images, labels, perm, i = batches.get(s)
        idx = np.asarray(perm)[int(i) * 256:(int(i) + 1) * 256]
        state, m = step(state, np.asarray(images)[idx], np.asarray(labels)[idx])
        losses.append(float(m["train_loss"]))
    assert logged[2] == pytest.approx(np.mean(losses[:2]), rel=1e-5)
    assert logged[4] == pytest.approx(np.mean(losses[2:]), rel=1e-5)
    t = result["timing"]
    parts = ("setup_s", "data_s", "compile_s", "train_s", "log_s", "eval_s", "checkpoint_s", "final_s")
    assert all(t[k] >= 0 for k in parts) and t["compile_s"] > 0
    assert sum(t[k] for k in parts) <= t["total_s"] + 1e-6
    assert 0 < t["first_step_s"] <= t["total_s"]


@pytest.mark.slow  # ~20 s of compiles; run with the benchmarks
def test_compile_time_rows_for_the_mlp(tmp_path):
    import json
    import compile_time
    compile_time.main(["--models", "mlp", "--methods", "fp,pdqat", "--pieces", "mlp", "--startup", "",
                       "--examples", "256", "--out", str(tmp_path), "--name", "ct"])
    payload = json.loads((tmp_path / "ct.json").read_text())
    rows = {r["method"]: r for r in payload["methods"]}
    assert rows["bare"]["cpu_vs_bare"] == 1.0
    assert rows["fp"]["compile_cpu_s"] > 0 and rows["fp"]["hlo_kchars"] > 0
    assert rows["fp"]["cpu_vs_bare"] == pytest.approx(rows["fp"]["compile_cpu_s"] / rows["bare"]["compile_cpu_s"])
    assert "switchable precision" in rows["pdqat"]["note"]  # PD-QAT needs its own model
    parts = [r["part"] for r in payload["pieces"]]
    assert len(parts) == 6 and parts[3].endswith("the trainer's step") and parts[5].startswith("bare")
    assert (tmp_path / "ct.md").read_text().startswith("# Compile time")
