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
