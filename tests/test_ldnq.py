"""L-DNQ: projection, Hessian, ADMM, and the post-training run from a full-precision model."""
import importlib
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import REPO, load_config
from jaxquant import quantizers
from jaxquant.errors import ConfigError, UserError
from jaxquant.ptq.ldnq import (LayerSpec, admm, capture_input, find_layers, hessian, kernel_matrix,
                               layer_rows, matrix_kernel, objective, project, quantizable_layers)


# ---------------------------------------------------------------- projection

def test_projection_fits_alpha_by_hand_three_levels():
    # alpha0 = 1: Q = [0, 1, -1, 1] (thresholds ±0.5); alpha = (0.9 + 1.1 + 2.2) / 3 = 1.4;
    # Q at 1.4 (thresholds ±0.7) is unchanged, so |Δα| = 0 ends it.
    g, alpha = project(jnp.array([0.1, 0.9, -1.1, 2.2]), 3, 1.0)
    np.testing.assert_allclose(alpha, 1.4, rtol=1e-6)
    np.testing.assert_allclose(g, [0.0, 1.4, -1.4, 1.4], rtol=1e-6)


def test_projection_fits_alpha_by_hand_five_levels():
    # codebook {0, ±1, ±2}: Q = [0, 1, -2, 2], alpha = (1.3 + 5.2 + 4.8) / 9 = 113 / 90.
    g, alpha = project(jnp.array([0.2, 1.3, -2.6, 2.4]), 5, 1.0)
    np.testing.assert_allclose(alpha, 113 / 90, rtol=1e-6)
    np.testing.assert_allclose(g, np.array([0, 1, -2, 2]) * 113 / 90, rtol=1e-6)


def test_projection_keeps_the_start_when_refitting_does_not_lower_the_error():
    # alpha0 = 1 fits v exactly (error 0): every refit is kept only if strictly better.
    v = jnp.array([0.0, 1.0, -2.0, 4.0, 8.0])
    g, alpha = project(v, 9, 1.0)
    np.testing.assert_allclose(alpha, 1.0)
    np.testing.assert_allclose(g, v)


# ---------------------------------------------------------------- Hessian

def _direct_conv_hessian(x, k, stride, pad, bias):
    """mean over images and positions of y yᵀ, patches y ordered (c, i, j) by explicit loops."""
    n, hh, ww, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = []
    for b in range(n):
        for i in range(0, hh + 2 * pad - k + 1, stride):
            for j in range(0, ww + 2 * pad - k + 1, stride):
                y = [xp[b, i + di, j + dj, ch] for ch in range(c) for di in range(k) for dj in range(k)]
                rows.append(y + [1.0] if bias else y)
    rows = np.array(rows, np.float64)
    return rows.T @ rows / len(rows)


@pytest.mark.parametrize("bias", [False, True])
def test_conv_hessian_matches_a_direct_computation_and_the_output_change(bias):
    conv = nn.Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=bias)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 6, 2))
    variables = conv.init(jax.random.PRNGKey(1), x)

    class Net(nn.Module):  # the conv inside a model, as L-DNQ meets it
        @nn.compact
        def __call__(self, x, train):
            return nn.Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=bias,
                           name="c")(jnp.tanh(x))

    net = Net()
    nv = net.init(jax.random.PRNGKey(1), x, train=False)
    (spec,) = find_layers(net, nv, x)
    assert spec.path == ("c",) and spec.kind == "conv" and spec.strides == (2, 2)
    inputs = capture_input(net, nv, x, spec.path)
    np.testing.assert_allclose(inputs, jnp.tanh(x), rtol=1e-6)
    s, count = hessian(layer_rows(inputs, spec), bias)
    direct = _direct_conv_hessian(np.asarray(inputs, np.float64), 3, 2, 1, bias)
    np.testing.assert_allclose(s / count, direct, rtol=1e-5, atol=1e-6)
    # ½ tr(δᵀHδ) is half the mean squared change of the layer's outputs (one patch ordering).
    p = variables["params"]
    dk = jax.random.normal(jax.random.PRNGKey(2), p["kernel"].shape)
    db = jax.random.normal(jax.random.PRNGKey(3), (4,)) if bias else None
    q = dict(p, kernel=p["kernel"] + dk, **({"bias": p["bias"] + db} if bias else {}))
    change = conv.apply({"params": q}, inputs) - conv.apply({"params": p}, inputs)
    mean_sq = jnp.sum(change ** 2) / (change.size / 4)
    d = kernel_matrix(dk, db)
    np.testing.assert_allclose(2 * objective(d, s / count, 0 * d), mean_sq, rtol=1e-4)


def test_dense_hessian_with_bias_appends_a_ones_column():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            return nn.Dense(2, name="d")(x.reshape(x.shape[0], -1))

    x = jnp.asarray(np.random.RandomState(0).randn(7, 3, 1), jnp.float32)
    net = Net()
    v = net.init(jax.random.PRNGKey(0), x, train=False)
    (spec,) = find_layers(net, v, x)
    assert spec.kind == "dense"
    s, count = hessian(layer_rows(capture_input(net, v, x, spec.path), spec), True)
    y = np.concatenate([np.asarray(x).reshape(7, 3), np.ones((7, 1))], axis=1)
    np.testing.assert_allclose(s / count, y.T @ y / 7, rtol=1e-5, atol=1e-6)
    assert count == 7
    # ½ tr(δᵀHδ) = ½ mean ||Δ output||² with Θ = [W; b]
    dw, db = jnp.ones((3, 2)) * 0.3, jnp.array([0.5, -1.0])
    p = v["params"]["d"]
    change = (net.apply({"params": {"d": {"kernel": p["kernel"] + dw, "bias": p["bias"] + db}}}, x,
                        train=False) - net.apply(v, x, train=False))
    d = kernel_matrix(dw, db)
    np.testing.assert_allclose(2 * objective(d, s / count, 0 * d), jnp.mean(jnp.sum(change ** 2, -1)),
                               rtol=1e-5)


def test_kernel_matrix_round_trips_conv_and_dense_kernels():
    k = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 5, 4))
    b = jnp.arange(4.0)
    theta = kernel_matrix(k, b)
    assert theta.shape == (3 * 2 * 5 + 1, 4)
    k2, b2 = matrix_kernel(theta, k.shape, True)
    np.testing.assert_array_equal(k2, k)
    np.testing.assert_array_equal(b2, b)
    d = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    np.testing.assert_array_equal(matrix_kernel(kernel_matrix(d), d.shape, False)[0], d)


# ---------------------------------------------------------------- the official code's H

def _conv_net(kernel, padding, strides=(1, 1), bias=False):
    class Net(nn.Module):  # one conv, its outputs flattened: the logits
        @nn.compact
        def __call__(self, x, train):
            y = nn.Conv(kernel.shape[-1], kernel.shape[:2], strides=strides, padding=padding,
                        use_bias=bias, name="c")(x)
            return y.reshape(y.shape[0], -1)
    return Net()


def _hand_patches(x, k, stride, pads, order):
    """Every k x k patch of x [N, H, W, C] (numpy loops), padded (top/left, bottom/right),
    features in (c, i, j) order ('consistent') or (i, j, c) order (TF's, 'official')."""
    n, hh, ww, c = x.shape
    lo, hi = pads
    xp = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    rows = []
    for b in range(n):
        for i in range(0, hh + lo + hi - k + 1, stride):
            for j in range(0, ww + lo + hi - k + 1, stride):
                if order == "consistent":
                    rows.append([xp[b, i + di, j + dj, ch] for ch in range(c) for di in range(k)
                                 for dj in range(k)])
                else:
                    rows.append([xp[b, i + di, j + dj, ch] for di in range(k) for dj in range(k)
                                 for ch in range(c)])
    return np.array(rows, np.float64)


@pytest.mark.parametrize("order", ["consistent", "official"])
def test_admm_gets_the_hand_built_hessian_of_each_patch_order(order, monkeypatch):
    # A 2x2-kernel, 2-channel, 3-output conv (no padding of its own) on two 3x3 images.
    # consistent: 2x2 = 4 patches per image, features (c, i, j) as the kernel rows (C, kh, kw).
    # official (the code's extract_image_patches, padding "SAME"): 3x3 = 9 patches per image
    # (one zero row / column below and right), features (i, j, c), against the same (C, kh, kw)
    # kernel rows: the code's unfold_kernel, kernel[o] = [C, kh, kw] flattened.
    L = importlib.import_module("jaxquant.ptq.ldnq")  # the module (the package exports the function)
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 3, 2).astype(np.float32)
    kernel = rng.randn(2, 2, 2, 3).astype(np.float32)  # Flax [kh, kw, C, O]
    net = _conv_net(kernel, "VALID")
    params = {"c": {"kernel": jnp.asarray(kernel)}}
    pads = (0, 0) if order == "consistent" else (0, 1)
    rows = _hand_patches(x.astype(np.float64), 2, 1, pads, order)
    assert len(rows) == (8 if order == "consistent" else 18)
    h_hand = rows.T @ rows / len(rows)
    theta_hand = np.stack([kernel[:, :, :, o].transpose(2, 0, 1).reshape(-1) for o in range(3)], 1)
    seen = []

    def recording_admm(h, theta0, *args, **kw):
        seen.append((np.asarray(h), np.asarray(theta0)))
        return admm(h, theta0, *args, **kw)

    monkeypatch.setattr(L, "admm", recording_admm)
    out = L.ldnq(net, params, {}, jnp.asarray(x), {"c": {"kernel": True}},
                 settings=L.Settings(cascade=False, hessian_order=order), log=lambda *_: None)
    (h, theta0), = seen
    np.testing.assert_allclose(h, h_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(theta0, theta_hand)
    if order == "official":  # a permuted H: not the consistent one of the same padded patches
        same = _hand_patches(x.astype(np.float64), 2, 1, pads, "consistent")
        assert not np.allclose(h, same.T @ same / len(same), atol=1e-3)
    res = admm(jnp.asarray(h_hand, jnp.float32), jnp.asarray(theta_hand), 3)  # folded back
    want = np.asarray(res.theta).reshape(2, 2, 2, 3).transpose(1, 2, 0, 3)   # [C,kh,kw,O] -> Flax
    np.testing.assert_allclose(out.params["c"]["kernel"], want, rtol=1e-5, atol=1e-6)


def test_official_patches_of_a_stride_two_conv_are_padded_tf_same():
    # 3x3 stride-2 conv on a 4x4 image, layer padding 1 on every side (PyTorch's): its
    # windows start at rows/cols -1 and 1. TF "SAME": out 2, total padding
    # (2 - 1) * 2 + 3 - 4 = 1, all of it below / right, so windows start at 0 and 2.
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) + 1
    spec = LayerSpec(("c",), "conv", (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1))
    ours = np.asarray(layer_rows(jnp.asarray(x), spec))
    official = np.asarray(layer_rows(jnp.asarray(x), spec, "official"))
    np.testing.assert_array_equal(ours, _hand_patches(x, 3, 2, (1, 1), "consistent"))
    np.testing.assert_array_equal(official, _hand_patches(x, 3, 2, (0, 1), "official"))
    np.testing.assert_array_equal(official[0], [1, 2, 3, 5, 6, 7, 9, 10, 11])  # rows 0-2, cols 0-2
    np.testing.assert_array_equal(ours[0], [0, 0, 0, 0, 1, 2, 0, 5, 6])      # rows -1..1
    with pytest.raises(UserError, match="config.ldnq.hessian_order"):
        layer_rows(jnp.asarray(x), spec, "tf")


def test_hessian_images_draws_that_many_images_for_each_layer(monkeypatch):
    # hessian_images=2 of 4 (the code: 202 of 500, drawn afresh per layer): H is the mean
    # y yᵀ of one pair of the images (with the bias column), whichever pair was drawn.
    import itertools
    L = importlib.import_module("jaxquant.ptq.ldnq")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            return nn.Dense(2, name="head")(x)

    x = np.random.RandomState(2).randn(4, 3).astype(np.float32)
    params = {"head": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    seen = []

    def recording_admm(h, *args, **kw):
        seen.append(np.asarray(h))
        return admm(h, *args, **kw)

    monkeypatch.setattr(L, "admm", recording_admm)
    L.ldnq(Net(), params, {}, jnp.asarray(x), {"head": {"kernel": True, "bias": True}},
           settings=L.Settings(cascade=False, hessian_images=2), log=lambda *_: None)
    y = np.concatenate([x, np.ones((4, 1), np.float32)], axis=1).astype(np.float64)
    pairs = [y[list(p)].T @ y[list(p)] / 2 for p in itertools.combinations(range(4), 2)]
    assert sum(np.allclose(seen[0], h, rtol=1e-5, atol=1e-6) for h in pairs) == 1
    assert not np.allclose(seen[0], y.T @ y / 4, atol=1e-3)


def test_cascade_own_bias_retrains_the_quantized_fc_bias_by_one_hand_sgd_step():
    # Dense 3 -> 2 with its bias quantized jointly; the cascade stops after exactly one step
    # (patience 1, checked every batch, one batch of all 5 images). With cascade_own_bias the
    # bias takes that SGD step on mean((x W + b - x W0 - b0)^2); without, nothing trains.
    import optax
    L = importlib.import_module("jaxquant.ptq.ldnq")  # the module (the package exports the function)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            return nn.Dense(2, name="head")(x)

    rng = np.random.RandomState(1)
    x = rng.randn(5, 3).astype(np.float32)
    w0, b0 = rng.randn(3, 2).astype(np.float32), rng.randn(2).astype(np.float32)
    params = {"head": {"kernel": jnp.asarray(w0), "bias": jnp.asarray(b0)}}
    mask = {"head": {"kernel": True, "bias": True}}
    lr = 0.1
    out = {}
    for own in (False, True):
        settings_ = L.Settings(batch_size=5, cascade_check_every=1, cascade_patience=1,
                               cascade_own_bias=own)
        out[own] = L.ldnq(Net(), params, {}, jnp.asarray(x), mask, settings=settings_,
                          tx=optax.sgd(lr), log=lambda *_: None)
        assert out[own].steps == 1
    w_q, b_q = (np.asarray(out[False].params["head"][k], np.float64) for k in ("kernel", "bias"))
    alpha = np.abs(np.concatenate([w_q.ravel(), b_q])).max()
    assert set(np.round(np.concatenate([w_q.ravel(), b_q]) / alpha, 6)) <= {-1.0, 0.0, 1.0}
    residual = x @ w_q + b_q - (x @ w0 + b0)          # [5, 2]
    grad_b = 2.0 * residual.sum(0) / residual.size    # d/db of the mean over 5 x 2 entries
    np.testing.assert_array_equal(out[True].params["head"]["kernel"], w_q)
    np.testing.assert_allclose(out[True].params["head"]["bias"], b_q - lr * grad_b, rtol=1e-5)
    assert not np.allclose(out[True].params["head"]["bias"], b_q)


# ---------------------------------------------------------------- ADMM

def _random_layer(seed, d=10, o=3, n=40):
    rng = np.random.RandomState(seed)
    mix = rng.randn(d, d) * rng.rand(d)           # correlated inputs of uneven scale
    x = rng.randn(n, d) @ mix
    h = jnp.asarray(x.T @ x / n, jnp.float32)
    w = jnp.asarray(rng.randn(d, o) * rng.choice([0.1, 1.0]), jnp.float32)
    return h, w


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), levels=st.sampled_from([3, 9]))
def test_admm_objective_is_never_above_naive_rounding(seed, levels):
    h, w = _random_layer(seed)
    res = admm(h, w, levels)
    assert float(res.objective) <= float(res.naive_objective) + 1e-6
    np.testing.assert_allclose(res.objective, objective(res.theta, h, w), rtol=1e-4, atol=1e-6)
    # every entry is alpha times a codebook level
    levels_used = np.unique(np.round(np.asarray(res.theta / res.alpha), 4))
    assert set(levels_used) <= set(np.asarray(quantizers.pow2_codebook(levels)).tolist())
    naive = float(jnp.mean(jnp.abs(w))) * quantizers.nearest(
        w / jnp.mean(jnp.abs(w)), quantizers.pow2_codebook(levels))
    np.testing.assert_allclose(res.naive_objective, objective(naive, h, w), rtol=1e-4, atol=1e-6)


def test_admm_beats_rounding_and_alpha_fitting_on_correlated_inputs():
    h, w = _random_layer(7, d=16, o=4)
    res = admm(h, w, 3)
    fitted, _ = project(w, 3, jnp.mean(jnp.abs(w)))
    assert float(res.objective) < 0.9 * float(res.naive_objective)
    assert float(res.objective) < float(objective(fitted, h, w))
    assert 1 <= int(res.iterations) <= 100


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), patience=st.sampled_from([1, 3]))
def test_admm_stops_patience_iterations_after_its_last_improvement(seed, patience):
    h, w = _random_layer(seed)
    res = admm(h, w, 3, patience=patience)
    assert int(res.iterations) == min(int(res.best_iteration) + patience, 100)
    capped = admm(h, w, 3, iterations=2, patience=patience)
    assert int(capped.iterations) <= 2


# ---------------------------------------------------------------- runs from an FP digits model

def _fp_config():
    c = load_config("fp_digits")
    c.model.features = (64, 64)
    c.train.update(epochs=5, eval_every_steps=0, log_every_steps=1000)
    return c


def _ldnq_config(fp_workdir, levels):
    c = load_config("ldnq_digits")
    c.model.features = (64, 64)
    c.init_checkpoint = fp_workdir
    c.ldnq.update(levels=levels, cascade_max_epochs=5)
    return c


@pytest.fixture(scope="module")
def fp_run(tmp_path_factory):
    from jaxquant import train
    workdir = str(tmp_path_factory.mktemp("fp_digits"))
    result = train.train_and_evaluate(_fp_config(), workdir, log=lambda *_: None)
    return workdir, result["test_accuracy"]


def _rounded(exp, levels):
    """Every L-DNQ layer of exp.params rounded to α0·nearest(Θ/α0): no ADMM, no cascade."""
    params = exp.params
    x = jnp.zeros((1, *exp.dataset.image_shape))
    book = quantizers.pow2_codebook(levels)
    for spec, with_bias in quantizable_layers(exp.model, params, exp.batch_stats, x, exp.mask):
        layer = params[spec.name]
        theta = kernel_matrix(layer["kernel"], layer["bias"] if with_bias else None)
        a = jnp.mean(jnp.abs(theta))
        k, b = matrix_kernel(a * quantizers.nearest(theta / a, book), layer["kernel"].shape, with_bias)
        params = dict(params, **{spec.name: dict(layer, kernel=k, **({"bias": b} if with_bias else {}))})
    return params


def test_nine_levels_stay_within_two_points_and_export_reads_the_run(fp_run, tmp_path):
    from jaxquant.evaluate import evaluate_export
    from jaxquant.export import export_run, load
    from jaxquant.ptq import runner
    fp_workdir, fp_acc = fp_run
    workdir = str(tmp_path / "q9")
    result = runner.run(_ldnq_config(fp_workdir, 9), workdir, log=lambda *_: None)
    assert result["fp_test_accuracy"] == pytest.approx(fp_acc)
    assert result["test_accuracy"] >= fp_acc - 0.02, (result["test_accuracy"], fp_acc)
    assert [r["name"] for r in result["layers"]] == ["stem", "dense1", "head"]
    assert all(r["objective"] <= r["naive_objective"] for r in result["layers"])
    assert os.path.isfile(os.path.join(workdir, "summary.txt"))
    export = export_run(workdir)
    params, _, manifest = load(export)
    assert len(np.unique(params["dense1"]["kernel"])) <= 9
    entry = next(e for e in manifest["tensors"] if e["name"] == "dense1/kernel")
    assert entry["encoding"] == "packed" and entry["bits"] <= 4
    assert evaluate_export(export)["accuracy"] == pytest.approx(result["test_accuracy"])
    # a finished run is reused, and another config is refused in its workdir
    assert runner.run(_ldnq_config(fp_workdir, 9), workdir, log=lambda *_: None) == result
    with pytest.raises(UserError, match="another config"):
        runner.run(_ldnq_config(fp_workdir, 5), workdir, log=lambda *_: None)


def test_three_levels_beat_naive_rounding(fp_run):
    from jaxquant import train
    from jaxquant.data.augment import normalize
    from jaxquant.ptq import ldnq
    from jaxquant.ptq.runner import settings_from_config
    config = _ldnq_config(fp_run[0], 3)
    exp = train.build_experiment(config)
    images = exp.dataset.train.images[:143]

    def preprocess(key, batch):
        return normalize(batch, exp.dataset.mean, exp.dataset.std)

    out = ldnq(exp.model, exp.params, exp.batch_stats, images, exp.mask, preprocess=preprocess,
               settings=settings_from_config(config), log=lambda *_: None)
    for leaf, m in zip(jax.tree.leaves(out.params), jax.tree.leaves(exp.mask)):
        assert not m or len(np.unique(leaf)) <= 3
    accuracy = lambda p, bs: train.evaluate(exp, train.make_eval_fn(exp), p, bs,  # noqa: E731
                                            exp.dataset.test)["accuracy"]
    assert accuracy(out.params, out.batch_stats) > accuracy(_rounded(exp, 3), exp.batch_stats) + 0.05


@pytest.mark.slow
def test_cli_writes_a_run_that_export_and_evaluate_read(fp_run, tmp_path):
    fp_workdir, _ = fp_run
    workdir = str(tmp_path / "cli")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)

    def python(*args):
        return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)

    out = python("jaxquant.main", "--config", "configs/ldnq_digits.py", "--workdir", workdir,
                 f"--config.init_checkpoint={fp_workdir}", "--config.model.features=(64, 64)",
                 "--config.ldnq.cascade_max_epochs=10")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "layer 3/3 head" in out.stdout and "objective naive" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    with open(os.path.join(workdir, "result.json")) as f:
        result = json.load(f)
    out = python("jaxquant.export", "--workdir", workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    out = python("jaxquant.evaluate", "--export", os.path.join(workdir, "export"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{100 * result['test_accuracy']:.2f}%" in out.stdout and "matches" in out.stdout
    out = python("jaxquant.main", "--config", "configs/ldnq_digits.py", "--workdir",
                 str(tmp_path / "bad"), "--config.init_checkpoint=/nonexistent/run")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "/nonexistent/run" in out.stderr


# ---------------------------------------------------------------- config and dispatch

def test_main_dispatches_ldnq_to_its_runner_and_the_rest_to_the_trainer():
    from jaxquant import methods
    from jaxquant.ptq import runner
    assert methods.runner("ldnq") is runner.run
    assert methods.runner("fp") is None and methods.runner("bwn") is None
    assert "ldnq" in methods.names()


def test_misspelt_ldnq_key_and_missing_checkpoint_are_config_errors(tmp_path):
    from jaxquant.ptq import runner
    c = load_config("ldnq_digits")
    c.ldnq.levelz = 5
    with pytest.raises(ConfigError, match="levelz.*levels"):
        runner.run(c, str(tmp_path / "a"))
    c = load_config("ldnq_digits")
    c.init_checkpoint = ""
    with pytest.raises(ConfigError, match="init_checkpoint"):
        runner.run(c, str(tmp_path / "b"))
    c = load_config("ldnq_digits")
    c.ldnq.hessian_order = "tf"
    with pytest.raises(ConfigError, match="config.ldnq.hessian_order.*consistent, official"):
        runner.run(c, str(tmp_path / "c"))


def test_a_mask_selecting_batchnorm_is_refused():
    from jaxquant import models
    import ml_collections
    from jaxquant.masks import quant_mask
    model = models.build(ml_collections.ConfigDict(dict(name="mlp", features=(8,))), 3)
    x = jnp.zeros((1, 4))
    v = model.init(jax.random.PRNGKey(0), x, train=False)
    mask = quant_mask(v["params"], [".*kernel", ".*scale"])
    with pytest.raises(UserError, match="bn_stem/scale"):
        quantizable_layers(model, v["params"], v["batch_stats"], x, mask)
    ok = quant_mask(v["params"], [".*kernel"])
    got = quantizable_layers(model, v["params"], v["batch_stats"], x, ok)
    assert [(s.name, b) for s, b in got] == [("stem", False), ("head", False)]


def test_ldnq_configs_load_and_validate():
    from jaxquant.config_check import validate
    from jaxquant.ptq.runner import settings_from_config
    tables = ("ldnq_cifar10_resnet20", "ldnq_cifar10_resnet32", "ldnq_cifar10_resnet56",
              "ldnq_imagenet_resnet18", "ldnq_imagenet_resnet34", "ldnq_imagenet_resnet50")
    for name in ("ldnq_digits", "ldnq_fashion_mnist") + tables:
        c = load_config(name)
        validate(c)
        s = settings_from_config(c)
        assert c.method.name == "ldnq" and c.init_checkpoint
        # paper tables run what the official code ran; the CPU configs the consistent algorithm
        official = name in tables
        assert s.hessian_order == ("official" if official else "consistent"), name
        assert s.cascade_own_bias is official and s.hessian_images == (202 if official else 0), name
    with open(os.path.join(REPO, "launch", "ldnq.sh")) as f:
        fp_rows = [line for line in f if line.lstrip().startswith('row "fp_')]
    assert len(fp_rows) == 1 and fp_rows[0].rstrip().endswith("\\")  # continued on the next line
    with open(os.path.join(REPO, "launch", "ldnq.sh")) as f:
        assert "--config.optimizer.weight_decay=5e-4" in f.read()  # the code's warm start
