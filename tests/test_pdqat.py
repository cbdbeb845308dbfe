"""PD-QAT: weights, the Lagrangian and its gradients, dual ascent, gradient routing,
resnet20q, and mixed precision from a run's dual variables."""
import json
import os

import flax.linen as nn
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from conftest import load_config
from jaxquant import models
from jaxquant import quantizers as Q
from jaxquant.config_check import validate
from jaxquant.errors import ConfigError
from jaxquant.masks import MaskError, full_precision_layers, param_paths, quant_mask
from jaxquant.methods import pdqat as P
from jaxquant.methods.base import Context, default_loss
from jaxquant.methods.baselines import dorefa
from jaxquant.papers.pdqat import baseline_for_seed, pdqat_cifar10

BITS = 2
EPS_OUT, EPS_LAYER = 0.3, 0.01


# ------------------------------------------------------------------ weights

def test_pdqat_weight_levels_by_hand():
    w = jnp.array([0.5, -2.0, 0.0, 1.5])  # E = mean|w| = 1
    # u = tanh w / (2 max|tanh w|) + 1/2 = [0.7397, 0, 0.5, 0.9695]
    # 2 bits: round(3u)/3 = [2/3, 0, 2/3 (1.5 rounds to even 2), 1] -> 2q - 1
    np.testing.assert_allclose(P.pdqat_weight(w, 2), [1 / 3, -1, 1 / 3, 1], atol=1e-6)
    # 1 bit: round(u) = [1, 0, 0, 1] (con-qat's q_1 of the tanh map)
    np.testing.assert_allclose(P.pdqat_weight(w, 1), [1, -1, -1, 1])
    # high precision: E tanh w / max|tanh w|
    t = np.tanh([0.5, -2.0, 0.0, 1.5])
    np.testing.assert_allclose(P.high_precision_weight(w), t / np.max(np.abs(t)), rtol=1e-6)
    # E scales every level: w -> 3w multiplies E by 3; tanh(3w) changes u, so compare levels
    np.testing.assert_allclose(np.unique(np.abs(P.pdqat_weight(3 * w, 2))), [1.0, 3.0], rtol=1e-6)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pdqat_weight_is_scaled_dorefa_for_two_or_more_bits(bits):
    w = jax.random.normal(jax.random.PRNGKey(bits), (5, 7))
    c = jax.random.normal(jax.random.PRNGKey(9), (5, 7))
    np.testing.assert_array_equal(P.pdqat_weight(w, bits), Q.dorefa_weight(w, bits, scale=True))
    g = jax.grad(lambda v: jnp.sum(c * P.pdqat_weight(v, bits, ste=True)))(w)
    g_ref = jax.grad(lambda v: jnp.sum(c * Q.dorefa_weight(v, bits, scale=True, ste=True)))(w)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_straight_through_gradient_is_the_high_precision_map_gradient(bits):
    # STE through the rounding only: d/dW of E(2 q(u) - 1) = d/dW of E(2u - 1), at 1 bit too.
    w = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
    c = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
    g = jax.grad(lambda v: jnp.sum(c * P.pdqat_weight(v, bits, ste=True)))(w)
    g_hp = jax.grad(lambda v: jnp.sum(c * P.high_precision_weight(v)))(w)
    np.testing.assert_allclose(g, g_hp, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ dual ascent

def _ascend(tx, lam, slacks):
    state = tx.init(lam)
    out = []
    for s in slacks:
        u, state = tx.update(jnp.asarray(s), state, lam)
        lam = optax.apply_updates(lam, u)
        out.append(float(lam))
    return out


def test_dual_ascent_per_step_by_hand():
    lams = _ascend(P.dual_ascent(0.01), jnp.asarray(0.5), [2.0, -10.0, -100.0, 3.0])
    np.testing.assert_allclose(lams, [0.52, 0.42, 0.0, 0.03], atol=1e-7)


def test_dual_ascent_per_epoch_applies_the_mean_slack_at_the_boundary():
    lams = _ascend(P.dual_ascent(0.1, every_steps=3), jnp.asarray(1.0),
                   [1.0, 2.0, 6.0, -30.0, -30.0, -30.0])
    np.testing.assert_allclose(lams, [1.0, 1.0, 1.3, 1.3, 1.3, 0.0], atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.floats(0, 5), st.lists(st.floats(-50, 50), min_size=1, max_size=12),
       st.integers(1, 4))
def test_dual_variables_stay_nonnegative(lam0, slacks, every):
    assert min(_ascend(P.dual_ascent(0.01, every), jnp.asarray(lam0, jnp.float32), slacks)) >= 0


def test_duals_grow_while_violated_and_shrink_to_zero_when_slack():
    tx = P.dual_ascent(0.01)
    grow = _ascend(tx, jnp.asarray(0.0), [0.5] * 5)
    assert all(b > a for a, b in zip([0.0] + grow, grow))
    shrink = _ascend(tx, jnp.asarray(0.05), [-1.0] * 10)
    assert shrink[-1] == 0.0 and all(b <= a for a, b in zip(shrink, shrink[1:]))


# ------------------------------------------------------------------ the Lagrangian on a tiny model

def _q(v):
    return Q.straight_through(lambda a: Q.dorefa_activation(a, BITS))(v)


class Tiny(nn.Module):
    """x -> fc (quantized, 3 units) -> switchable BN -> head (2 classes); the model contract."""

    @nn.compact
    def __call__(self, x, train, low_precision=True, layer_inputs=None):
        fc = nn.Dense(3, use_bias=False, name="fc")
        q = _q if low_precision else (lambda v: v)
        xin = q(x)
        y = fc(xin)
        if layer_inputs is None:
            self.sow("intermediates", "fc_input", xin)
            self.sow("intermediates", "fc_output", q(jnp.clip(y, 0, 1)))
        elif "fc" in layer_inputs:
            self.sow("intermediates", "fc_output", q(jnp.clip(fc(layer_inputs["fc"]), 0, 1)))
        names = ("bn", "bn_fp") if low_precision else ("bn_fp", "bn")
        out = nn.BatchNorm(use_running_average=not train, name=names[0])(y)
        if self.is_initializing():
            nn.BatchNorm(use_running_average=not train, name=names[1])(y)
        if layer_inputs is None:  # fc's output after its BatchNorm (zb_after_bn)
            self.sow("intermediates", "fc_output_bn", q(jnp.clip(out, 0, 1)))
        return nn.Dense(2, name="head")(out)


X = jax.random.uniform(jax.random.PRNGKey(3), (6, 4), minval=-0.3, maxval=1.3)
Y = jnp.array([0, 1, 1, 0, 1, 0])
FC_ONLY = lambda p: quant_mask(p, include=["fc/kernel"], strict=False)  # noqa: E731


def _tiny(**kw):
    model = Tiny()
    v = model.init(jax.random.PRNGKey(0), X, train=False)
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(7), a.shape), v["params"])
    kw = dict(dict(eps_out=EPS_OUT, eps_layer=EPS_LAYER, layerwise=True), **kw)
    method = P.pdqat(optax.sgd(0.1), BITS, mask=FC_ONLY, **kw)
    latent = method.init(params)
    latent["duals"] = {"out": jnp.asarray(0.7), "layers": {"fc": jnp.asarray(2.5)}}
    return model, method, latent, v["batch_stats"]


def _bn(y, p):
    mean, var = y.mean(0), y.var(0)
    return (y - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _by_hand(params, lam_out, lam_l):
    """L = CE(f32) + lam_out (CE_soft(f^b, softmax f32) - eps_out) + lam_l (D_fc - eps_l)."""
    w = params["fc"]["kernel"]
    head = lambda h: h @ params["head"]["kernel"] + params["head"]["bias"]  # noqa: E731
    xq = Q.dorefa_activation(X, BITS)
    w_b, w_32 = P.pdqat_weight(w, BITS), P.high_precision_weight(w)
    logits_b = head(_bn(xq @ w_b, params["bn"]))
    logits_32 = head(_bn(X @ w_32, params["bn_fp"]))
    logp32 = jax.nn.log_softmax(logits_32)
    ce = -jnp.mean(logp32[jnp.arange(len(Y)), Y])
    d_out = -jnp.mean(jnp.sum(jnp.exp(logp32) * jax.nn.log_softmax(logits_b), -1))
    z_b = Q.dorefa_activation(xq @ w_b, BITS)
    z_32 = jnp.clip(xq @ w_32, 0, 1)
    d_l = jnp.mean((z_32 - z_b) ** 2)
    return ce + lam_out * (d_out - EPS_OUT) + lam_l * (d_l - EPS_LAYER), (ce, d_out, d_l)


def _loss(method, model, latent, bs):
    return method.loss(method, model.apply, latent, bs, X, Y, 0)


def _grad(method, model, latent, bs, has_aux=False):
    """Jitted value-and-gradient of the method's Lagrangian on the tiny batch."""
    f = lambda l: _loss(method, model, l, bs) if has_aux else _loss(method, model, l, bs)[0]  # noqa: E731
    return jax.jit(jax.value_and_grad(f, has_aux=has_aux))(latent)


def test_lagrangian_value_and_dual_gradients_by_hand():
    model, method, latent, bs = _tiny()
    (value, aux), grads = _grad(method, model, latent, bs, has_aux=True)
    want, (ce, d_out, d_l) = jax.jit(_by_hand)(latent["params"], 0.7, 2.5)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    np.testing.assert_allclose(aux.metrics["d_out"], d_out, rtol=1e-5)
    np.testing.assert_allclose(aux.metrics["ce_fp"], ce, rtol=1e-5)
    # dL/dlambda = the slack D - eps
    np.testing.assert_allclose(grads["duals"]["out"], d_out - EPS_OUT, rtol=1e-5)
    np.testing.assert_allclose(grads["duals"]["layers"]["fc"], d_l - EPS_LAYER, rtol=1e-4, atol=1e-7)
    assert float(aux.metrics["lambda_out"]) == pytest.approx(0.7)
    assert float(aux.metrics["lambda/fc"]) == pytest.approx(2.5)
    # each pass updated its own BatchNorm statistics
    for name in ("bn", "bn_fp"):
        assert not np.allclose(aux.batch_stats[name]["mean"], bs[name]["mean"])


def _hand_grads(latent, low_trainable):
    """Gradients of the by-hand Lagrangian when the low-precision pass may only train
    `low_trainable` params (the rest enter it stop-gradiented)."""
    params = latent["params"]

    def f(p):
        frozen = jax.tree.map(jax.lax.stop_gradient, p)
        low = {k: (p[k] if k in low_trainable else frozen[k]) for k in p}
        w = p["fc"]["kernel"]
        head = lambda h, q: h @ q["head"]["kernel"] + q["head"]["bias"]  # noqa: E731
        xq = Q.dorefa_activation(X, BITS)
        w_b = P.pdqat_weight(low["fc"]["kernel"], BITS, ste=True)
        logits_b = head(_bn(xq @ w_b, low["bn"]), low)
        w_32 = P.high_precision_weight(w)
        logits_32 = head(_bn(X @ w_32, p["bn_fp"]), p)
        logp32 = jax.nn.log_softmax(logits_32)
        ce = -jnp.mean(logp32[jnp.arange(len(Y)), Y])
        d_out = -jnp.mean(jnp.sum(jnp.exp(logp32) * jax.nn.log_softmax(logits_b), -1))
        z_b = _q(jnp.clip(xq @ w_b, 0, 1))
        d_l = jnp.mean((jnp.clip(xq @ w_32, 0, 1) - z_b) ** 2)
        return ce + 0.7 * (d_out - EPS_OUT) + 2.5 * (d_l - EPS_LAYER)

    return jax.grad(f)(params)


@pytest.mark.parametrize("routing,low_trainable", [("high", {"bn"}), ("both", {"bn", "fc", "head"})])
def test_param_gradients_follow_the_routing(routing, low_trainable):
    model, method, latent, bs = _tiny(routing=routing)
    grads = _grad(method, model, latent, bs)[1]["params"]
    want = jax.jit(lambda l: _hand_grads(l, low_trainable))(latent)
    for path, g, w in zip(param_paths(grads), jax.tree.leaves(grads), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=path)


def test_shared_weights_get_no_gradient_from_the_low_precision_path_by_default():
    # With every constraint off except D_out, and the soft target detached, the only
    # link of the shared weights to D_out is the low-precision pass: their gradient must
    # be CE's alone, while the low-precision BN does get D_out's gradient.
    model, method, latent, bs = _tiny(detach_target=True, layerwise=False)
    latent["duals"] = {"out": jnp.asarray(5.0)}
    g = _grad(method, model, latent, bs)[1]["params"]
    latent0 = dict(latent, duals={"out": jnp.asarray(0.0)})
    g_ce = _grad(method, model, latent0, bs)[1]["params"]
    for name in ("fc", "head", "bn_fp"):
        for a, b in zip(jax.tree.leaves(g[name]), jax.tree.leaves(g_ce[name])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert np.abs(g["bn"]["scale"]).max() > 1e-4
    assert np.abs(g_ce["bn"]["scale"]).max() == 0.0
    _, method_both, _, _ = _tiny(detach_target=True, layerwise=False, routing="both")
    g_both = _grad(method_both, model, latent, bs)[1]["params"]
    assert not np.allclose(g_both["fc"]["kernel"], g["fc"]["kernel"])


# ------------------------------------------------------------------ con-qat's baselines

def _from_config(method_cfg, mask=FC_ONLY):
    cfg = ml_collections.ConfigDict(dict(method=dict(name="pdqat", bits=BITS, **method_cfg)))
    ctx = Context(config=cfg, optimizer=optax.sgd(0.1), learning_rate=lambda s: 0.1, mask=mask,
                  steps_per_epoch=3)
    return P.from_config("pdqat", ctx)


def _tiny_params():
    model = Tiny()
    v = model.init(jax.random.PRNGKey(0), X, train=False)
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(7), a.shape),
                          v["params"])
    return model, params, v["batch_stats"]


def _baseline_by_hand(p, low_trainable, detach_target):
    """CE(f32) + 1 * CE_soft(f^b, softmax f32), the low pass training only `low_trainable`."""
    frozen = jax.tree.map(jax.lax.stop_gradient, p)
    low = {k: (p[k] if k in low_trainable else frozen[k]) for k in p}
    head = lambda h, q: h @ q["head"]["kernel"] + q["head"]["bias"]  # noqa: E731
    xq = Q.dorefa_activation(X, BITS)
    logits_b = head(_bn(xq @ P.pdqat_weight(low["fc"]["kernel"], BITS, ste=True), low["bn"]), low)
    logits_32 = head(_bn(X @ P.high_precision_weight(p["fc"]["kernel"]), p["bn_fp"]), p)
    logp32 = jax.nn.log_softmax(logits_32)
    target = jnp.exp(logp32)
    if detach_target:
        target = jax.lax.stop_gradient(target)
    ce = -jnp.mean(logp32[jnp.arange(len(Y)), Y])
    return ce + -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits_b), -1))


@pytest.mark.parametrize("baseline,low_trainable,detach", [
    ("anyprec", {"bn", "fc", "head"}, True),   # train_anyprec.py: both passes train W
    ("vanilla", {"bn"}, False)])               # train_vanilla.py --vanilla: W via f32 only
def test_baselines_loss_and_gradients_by_hand(baseline, low_trainable, detach):
    model, params, bs = _tiny_params()
    # a config completed with every default, as jaxquant.main writes it, plus the baseline
    completed = {k: v for k, v in P.DEFAULTS["pdqat"].items() if k != "bits"}
    method = _from_config(dict(completed, baseline=baseline))
    latent = method.init(params)
    assert float(latent["duals"]["out"]) == 1.0 and "layers" not in latent["duals"]
    f = jax.jit(jax.value_and_grad(lambda l: method.loss(method, model.apply, l, bs, X, Y, 0)[0]))
    value, grads = f(latent)
    want, want_g = jax.jit(jax.value_and_grad(
        lambda p: _baseline_by_hand(p, low_trainable, detach)))(params)
    np.testing.assert_allclose(value, want, rtol=1e-5)  # eps_out = 0: the loss is CE + D_out
    for path, g, w in zip(param_paths(want_g), jax.tree.leaves(grads["params"]), jax.tree.leaves(want_g)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=path)
    # lambda_out stays 1: the duals' update is zero whatever their gradient (the slack)
    state = method.tx.init(latent)
    for _ in range(4):
        updates, state = method.tx.update(grads, state, latent)
        latent = optax.apply_updates(latent, updates)
    assert float(latent["duals"]["out"]) == 1.0 and method.epoch_end is None


def test_baseline_contradicted_by_another_key_is_a_config_error():
    with pytest.raises(ConfigError, match="baseline='vanilla' sets routing='high'.*routing='both'"):
        _from_config(dict(baseline="vanilla", routing="both"))
    with pytest.raises(ConfigError, match="baseline='anyprec' sets layerwise=False.*layerwise=True"):
        _from_config(dict(baseline="anyprec", layerwise=True))
    with pytest.raises(ConfigError, match="baseline must be None .*anyprec, vanilla"):
        _from_config(dict(baseline="dorefa"))
    # agreeing keys, and keys at their default (jaxquant.main fills every default in), are fine
    _from_config(dict(baseline="vanilla", routing="high"))


# ------------------------------------------------------------------ con-qat's layer-wise details

def _layer_grads(method_kw, lam_l=2.5):
    """Lagrangian gradients of the tiny model with lambda_out = 0 (D_l's gradient alone)."""
    model, params, bs = _tiny_params()
    method = P.pdqat(optax.sgd(0.1), BITS, mask=FC_ONLY, eps_out=EPS_OUT, eps_layer=EPS_LAYER,
                     layerwise=True, **method_kw)
    latent = method.init(params)
    latent["duals"] = {"out": jnp.asarray(0.0), "layers": {"fc": jnp.asarray(lam_l)}}
    return params, jax.jit(jax.grad(lambda l: method.loss(method, model.apply, l, bs, X, Y, 0)[0]))(latent)


def _d_layer_by_hand(p, after_bn, detach_zb, low_trainable):
    frozen = jax.tree.map(jax.lax.stop_gradient, p)
    low = {k: (p[k] if k in low_trainable else frozen[k]) for k in p}
    xq = Q.dorefa_activation(X, BITS)
    y_b = xq @ P.pdqat_weight(low["fc"]["kernel"], BITS, ste=True)
    z_b = _q(jnp.clip(_bn(y_b, low["bn"]) if after_bn else y_b, 0, 1))
    if detach_zb:
        z_b = jax.lax.stop_gradient(z_b)
    z_32 = jnp.clip(xq @ P.high_precision_weight(p["fc"]["kernel"]), 0, 1)
    return jnp.mean((z_32 - z_b) ** 2)


def test_zb_after_bn_compares_the_low_precision_output_after_its_batchnorm():
    # con-qat's first conv of a block: z_b = q(clip(bn(conv_b x))) vs z_32 = clip(conv_32 x)
    model, params, bs = _tiny_params()
    for after_bn in (False, True):
        method = P.pdqat(optax.sgd(0.1), BITS, mask=FC_ONLY, eps_out=EPS_OUT, eps_layer=EPS_LAYER,
                         layerwise=True, zb_after_bn=after_bn)
        g = jax.jit(jax.grad(lambda l: method.loss(method, model.apply, l, bs, X, Y, 0)[0]))(
            method.init(params))
        d = jax.jit(lambda p: _d_layer_by_hand(p, after_bn, False, {"bn"}))(params)
        np.testing.assert_allclose(g["duals"]["layers"]["fc"], d - EPS_LAYER, rtol=1e-5, atol=1e-7)
    # after BN the low-precision BatchNorm gets D_l's gradient (lambda_out = 0: nothing else)
    _, g = _layer_grads(dict(zb_after_bn=True))
    ce_only = _layer_grads(dict(zb_after_bn=True), lam_l=0.0)[1]  # CE(f32): no low-precision BN
    want = jax.jit(jax.grad(lambda p: 2.5 * _d_layer_by_hand(p, True, False, {"bn"})))(params)
    for name in ("bn", "fc"):
        for a, c0, b in zip(jax.tree.leaves(g["params"][name]), jax.tree.leaves(ce_only["params"][name]),
                            jax.tree.leaves(want[name])):
            np.testing.assert_allclose(a - c0, b, rtol=1e-4, atol=1e-6)
    assert np.abs(g["params"]["bn"]["scale"]).max() > 1e-4
    assert np.abs(ce_only["params"]["bn"]["scale"]).max() == 0.0


@pytest.mark.parametrize("detach", [False, True])
def test_detach_low_outputs_stops_the_gradient_through_zb(detach):
    # routing 'both': without detaching, D_l reaches fc's kernel through z_b (STE) as well
    params, g = _layer_grads(dict(routing="both", detach_low_outputs=("fc",) if detach else ()))
    want = jax.jit(jax.grad(lambda p: 2.5 * _d_layer_by_hand(p, False, detach, {"bn", "fc", "head"})))(params)
    ce_only = _layer_grads(dict(routing="both"), lam_l=0.0)[1]
    got = g["params"]["fc"]["kernel"] - ce_only["params"]["fc"]["kernel"]  # D_l's part
    np.testing.assert_allclose(got, want["fc"]["kernel"], rtol=1e-4, atol=1e-6)
    other = jax.jit(jax.grad(lambda p: 2.5 * _d_layer_by_hand(p, False, not detach, {"bn", "fc", "head"})))(params)
    assert not np.allclose(got, other["fc"]["kernel"], atol=1e-5)


# ------------------------------------------------------------------ con-qat's dual update

def test_epoch_eval_dual_update_is_the_eval_mode_mean_slack_by_hand():
    model, params, _ = _tiny_params()
    # running statistics of both BN sets (eval mode uses them, not the batch's)
    bs = {"bn": {"mean": jnp.array([0.1, -0.2, 0.3]), "var": jnp.array([0.5, 2.0, 1.5])},
          "bn_fp": {"mean": jnp.array([-0.3, 0.2, 0.0]), "var": jnp.array([1.2, 0.7, 0.9])}}
    method = P.pdqat(optax.sgd(0.1), BITS, mask=FC_ONLY, eps_out=EPS_OUT, eps_layer=EPS_LAYER,
                     layerwise=True, dual_update="epoch_eval", dual_lr=0.05)
    latent = method.init(params)
    latent["duals"] = {"out": jnp.asarray(0.7), "layers": {"fc": jnp.asarray(0.02)}}

    def mean_over_train(fn):  # the trainer's contract, over two batches of 3
        parts = [jax.device_get(fn(model.apply, latent, bs, X[i:i + 3], Y[i:i + 3])) for i in (0, 3)]
        return jax.tree.map(lambda *a: np.concatenate(a).mean(0), *parts)

    new = method.epoch_end(latent, mean_over_train)
    # by hand, numpy, eval-mode BN: (y - mean) / sqrt(var + 1e-5) * scale + bias
    p = jax.tree.map(np.asarray, params)
    ev = lambda y, n: (y - np.asarray(bs[n]["mean"])) / np.sqrt(np.asarray(bs[n]["var"]) + 1e-5) \
        * p[n]["scale"] + p[n]["bias"]  # noqa: E731
    head = lambda h: h @ p["head"]["kernel"] + p["head"]["bias"]  # noqa: E731
    q = lambda v: np.round(np.clip(v, 0, 1) * 3) / 3  # noqa: E731
    xq = q(np.asarray(X))
    w_b, w_32 = np.asarray(P.pdqat_weight(p["fc"]["kernel"], BITS)), np.asarray(P.high_precision_weight(p["fc"]["kernel"]))
    lb, l32 = head(ev(xq @ w_b, "bn")), head(ev(np.asarray(X) @ w_32, "bn_fp"))
    log_sm = lambda z: z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))  # noqa: E731
    d_out = -(np.exp(log_sm(l32)) * log_sm(lb)).sum(-1)
    d_l = ((np.clip(xq @ w_32, 0, 1) - q(xq @ w_b)) ** 2).mean(-1)
    np.testing.assert_allclose(new["duals"]["out"], max(0.0, 0.7 + 0.05 * (d_out.mean() - EPS_OUT)), rtol=1e-5)
    np.testing.assert_allclose(new["duals"]["layers"]["fc"], max(0.0, 0.02 + 0.05 * (d_l.mean() - EPS_LAYER)),
                               rtol=1e-5, atol=1e-8)
    assert new["params"] is latent["params"]
    # the training steps leave the duals alone in this mode
    grads = jax.tree.map(jnp.ones_like, latent)
    updates, _ = method.tx.update(grads, method.tx.init(latent), latent)
    assert all(float(u) == 0.0 for u in jax.tree.leaves(updates["duals"]))


def test_trainer_split_mean_is_the_mean_over_the_unaugmented_training_split():
    from jaxquant import train
    c = load_config("fp_digits")
    c.train.eval_batch_size = 100  # 1437 / 100: the last batch is padded
    exp = train.build_experiment(c)
    mean = train.make_split_mean(exp, exp.dataset.train)

    def fn(apply_fn, latent, batch_stats, images, labels):
        del apply_fn, batch_stats
        return {"pixel": images[:, 3, 4, 0] * latent, "label": labels.astype(jnp.float32)}

    got = mean(fn, jnp.asarray(2.0), {})
    tr = exp.dataset.train
    x = (tr.images.astype(np.float64) / 255.0 - np.asarray(exp.dataset.mean)) / np.asarray(exp.dataset.std)
    np.testing.assert_allclose(got["pixel"], 2.0 * x[:, 3, 4, 0].mean(), rtol=1e-4)
    np.testing.assert_allclose(got["label"], tr.labels.mean(), rtol=1e-6)


def test_trainer_calls_epoch_end_after_every_epoch_and_keeps_its_latent(tmp_path, monkeypatch):
    from jaxquant import train
    from jaxquant.methods.base import identity_method
    c = load_config("fp_digits")
    c.model.features = (16,)
    c.train.update(batch_size=512, epochs=3, log_every_steps=1, eval_every_steps=0)  # 2 steps / epoch
    calls = []

    def label_mean(apply_fn, latent, batch_stats, images, labels):
        return labels.astype(jnp.float32)

    def epoch_end(latent, mean_over_train):
        calls.append(float(mean_over_train(label_mean)))
        return jax.tree.map(lambda x: x * 0.0, latent)  # visible in the final weights

    def build(name, ctx):
        return identity_method(optax.sgd(0.0))._replace(epoch_end=epoch_end)

    monkeypatch.setattr(train.methods, "build", build)
    train.train_and_evaluate(c, str(tmp_path), log=lambda *_: None)
    labels = train.build_experiment(c).dataset.train.labels
    np.testing.assert_allclose(calls, [labels.mean()] * 3, rtol=1e-6)
    weights, _, _ = train.checkpoints.load_weights(str(tmp_path))
    assert all(np.all(np.asarray(w) == 0) for w in jax.tree.leaves(weights))


def test_layerwise_needs_a_model_that_sows_layer_outputs():
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x, train, low_precision=True, layer_inputs=None):
            return nn.Dense(2, name="fc")(x)
    model = Plain()
    params = model.init(jax.random.PRNGKey(0), X, train=False)["params"]
    method = P.pdqat(optax.sgd(0.1), BITS, mask=FC_ONLY, eps_out=0.1, layerwise=True)
    with pytest.raises(ConfigError, match="resnet20q"):
        method.loss(method, model.apply, method.init(params), {}, X, Y, 0)


def test_tx_descends_on_params_and_ascends_on_duals():
    model, method, latent, bs = _tiny(dual_every_steps=1)
    grads = _grad(method, model, latent, bs)[1]
    state = method.tx.init(latent)
    updates, _ = method.tx.update(grads, state, latent)
    new = optax.apply_updates(latent, updates)
    np.testing.assert_allclose(updates["params"]["fc"]["kernel"], -0.1 * grads["params"]["fc"]["kernel"],
                               rtol=1e-6)
    np.testing.assert_allclose(new["duals"]["out"], max(0.0, 0.7 + 0.01 * float(grads["duals"]["out"])),
                               rtol=1e-6)
    state = method.final_state(new)
    assert state["ranking"] == ["fc"] and state["lambda_layers"]["fc"] == pytest.approx(
        float(new["duals"]["layers"]["fc"]))


# ------------------------------------------------------------------ resnet20q

def _resnet20q(fp_layers=(), **kw):
    cfg = ml_collections.ConfigDict(dict(name="resnet20q", act_bits=2, **kw))
    return models.build(cfg, 10, fp_layers)


def test_resnet20q_parameter_count_and_shapes():
    v = jax.eval_shape(lambda: _resnet20q().init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                                 train=False))
    shapes = {p: x.shape for p, x in zip(param_paths(v["params"]), jax.tree.leaves(v["params"]))}
    # convs: stem 3*3*3*80; stage 1: 6 x 9*80*80; stage 2: 9*80*160 + 5 x 9*160*160 + 80*160;
    # stage 3: 9*160*320 + 5 x 9*320*320 + 160*320; head 320*10 + 10;
    # BatchNorm scale + bias, two sets: 2 * 2 * (3*(80+80) + (80+160+160) + 2*(160+160)
    #   + (160+320+320) + 2*(320+320) + 320) = 15,680
    convs = 2160 + 6 * 57600 + 115200 + 5 * 230400 + 12800 + 460800 + 5 * 921600 + 51200
    assert sum(int(np.prod(s)) for s in shapes.values()) == convs + 3210 + 15680 == 6_766_650
    quantized = [p for p in shapes if p.endswith("kernel") and not p.startswith(("stem", "head"))]
    assert len(quantized) == 20 and sum("shortcut" in p for p in quantized) == 2
    assert shapes["stage3_block0/shortcut/kernel"] == (1, 1, 160, 320)
    assert shapes["stage1_block0/bn1_fp/scale"] == (80,)


@pytest.fixture(scope="module")
def resnet8q():
    """A tiny resnet20q (depth 8, widths 16/32/64, 2-bit activations; stage2_block0/conv2 kept
    at 32 bits), its variables and a batch."""
    model = _resnet20q(("stage2_block0/conv2",), depth=8, expand=1)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 4, 4, 3))
    # variables from their shapes (no compiled init): random kernels, identity BatchNorms
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 64))
    fill = {"kernel": lambda s: 0.3 * jax.random.normal(next(keys), s.shape),
            "scale": lambda s: jnp.ones(s.shape), "var": lambda s: jnp.ones(s.shape)}
    v = jax.tree_util.tree_map_with_path(
        lambda p, s: fill.get(p[-1].key, lambda s: jnp.zeros(s.shape))(s), shapes)
    return model, v, x


def test_resnet20q_switches_bn_set_and_activation_quantization(resnet8q):
    model, v, x = resnet8q

    @jax.jit
    def both(v):
        return [model.apply(v, x, train=True, low_precision=low,
                            mutable=["batch_stats", "intermediates"])[1] for low in (True, False)]

    inter = {}
    for low, mut in zip((True, False), both(v)):
        inter[low] = P._layer_values(mut["intermediates"], "_input")
        changed = [p for p, a, b in zip(param_paths(v["batch_stats"]), jax.tree.leaves(v["batch_stats"]),
                                        jax.tree.leaves(mut["batch_stats"])) if not np.allclose(a, b)]
        assert changed and all(("_fp/" in p) != low for p in changed)
    assert sorted(inter[True]) == ["stage1_block0/conv1", "stage1_block0/conv2",
                                   "stage2_block0/conv1", "stage2_block0/conv2",
                                   "stage2_block0/shortcut", "stage3_block0/conv1",
                                   "stage3_block0/conv2", "stage3_block0/shortcut"]
    for name, a in inter[True].items():  # 2-bit activations: levels {0, 1/3, 2/3, 1}
        if name != "stage2_block0/conv2":
            np.testing.assert_allclose(np.asarray(a) * 3, np.round(np.asarray(a) * 3), atol=1e-5)
    assert len(np.unique(np.asarray(inter[False]["stage1_block0/conv2"]))) > 4
    # a full-precision layer of a mixed-precision model sees unquantized inputs
    assert len(np.unique(np.asarray(inter[True]["stage2_block0/conv2"]))) > 4


def test_resnet20q_sows_the_first_conv_output_after_its_batchnorm(resnet8q):
    # con-qat's z_b of a block's first conv: q(clip(bn(conv(x)))), BN in training mode
    model, v, x = resnet8q
    inter = jax.jit(lambda v: model.apply(v, x, train=True, low_precision=True,
                                          mutable=["batch_stats", "intermediates"])[1])(v)["intermediates"]
    # (stage2_block0/conv2 is kept at 32 bits in this fixture: its input, con-qat's z_b of
    # conv1 there, is not quantized, as con-qat's Conv2d_FULL passes it)
    for block, stride, bits in (("stage1_block0", 1, 2), ("stage2_block0", 2, None)):
        xin = np.asarray(inter[block]["conv1_input"][0])
        y = jax.lax.conv_general_dilated(xin, v["params"][block]["conv1"]["kernel"], (stride, stride),
                                         ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = np.asarray(y)
        bn = (y - y.mean((0, 1, 2))) / np.sqrt(y.var((0, 1, 2)) + 1e-5)  # scale 1, bias 0
        want = np.clip(bn, 0, 1)
        if bits:
            want = np.round(want * (2 ** bits - 1)) / (2 ** bits - 1)
        np.testing.assert_allclose(inter[block]["conv1_output_bn"][0], want, atol=1e-5)


def test_torch_init_draws_uniform_within_one_over_sqrt_fan_in():
    from jaxquant.models import layers

    class Convs(nn.Module):  # the layer builders every model uses
        sw: layers.Switches

        @nn.compact
        def __call__(self, x):
            x = layers.conv(self.sw, 32, 3, name="c3", bias=True)(x)
            x = layers.conv(self.sw, 64, 1, name="c1", bias=False)(x)
            return layers.head(self.sw, 10)(jnp.mean(x, axis=(1, 2)))

    sw = layers.switches_from_config(ml_collections.ConfigDict(dict(init="torch")))
    params = jax.jit(lambda k: Convs(sw).init(k, jnp.zeros((1, 4, 4, 16))))(jax.random.PRNGKey(0))["params"]
    fan_in = {"c3/kernel": 3 * 3 * 16, "c3/bias": 3 * 3 * 16, "c1/kernel": 32,
              "head/kernel": 64, "head/bias": 64}  # PyTorch: in_channels * kh * kw
    flat = dict(zip(param_paths(params), jax.tree.leaves(params)))
    for path, n in fan_in.items():
        w, bound = np.asarray(flat[path]), 1 / np.sqrt(n)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound, path
        if w.size > 1000:  # U(-b, b): std b / sqrt(3)
            assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound, path
    default = Convs(layers.Switches()).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 16)))["params"]
    assert np.abs(default["head"]["bias"]).max() == 0.0  # Flax's default: zero biases
    with pytest.raises(ConfigError, match="config.model.init must be one of default, xavier_uniform, torch"):
        layers.switches_from_config(ml_collections.ConfigDict(dict(init="pytorch")))


def test_dorefa_baseline_composes_with_resnet20q(resnet8q):
    model, v, x = resnet8q
    one_set = jax.eval_shape(lambda: _resnet20q(depth=8, expand=1, switchable_bn=False).init(
        jax.random.PRNGKey(0), x, train=False))
    assert not any("_fp" in p for p in param_paths(one_set["params"]))
    mask = lambda p: quant_mask(p, [".*kernel"], ["stem/.*", "head/.*"], strict=False)  # noqa: E731
    m = dorefa(optax.adam(1e-3), 2, mask=mask)
    loss, aux = jax.jit(lambda l: default_loss(m, model.apply, l, v["batch_stats"], x,
                                               jnp.arange(4), 0))(m.init(v["params"]))
    assert np.isfinite(loss)
    changed = [p for p, a, b in zip(param_paths(v["batch_stats"]), jax.tree.leaves(v["batch_stats"]),
                                    jax.tree.leaves(aux.batch_stats)) if not np.allclose(a, b)]
    assert changed and not any("_fp/" in p for p in changed)  # the default pass is low precision
    assert len(np.unique(np.asarray(m.project(v["params"])["stage1_block0"]["conv1"]["kernel"]))) <= 4


# ------------------------------------------------------------------ configs and mixed precision

@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_table_configs_carry_the_paper_eps_and_the_code_behaviour(bits):
    for kind in ("baseline", "output", "layerwise"):
        c = load_config(f"pdqat_cifar10_b{bits}_{kind}")
        validate(c)
        assert c.model.act_bits == bits and c.train.epochs == 100
        assert c.model.init == "torch" and c.model.switchable_bn and c.method.name == "pdqat"
        if kind == "baseline":  # PD-QAT's own baseline, not DoReFa
            assert c.method.baseline == "anyprec"
        else:
            assert c.method.eps_out == P.PAPER_EPS_OUT[bits]
            assert c.method.layerwise == (kind == "layerwise")
            assert c.method.dual_update == "epoch_eval" and c.method.zb_after_bn
            assert tuple(c.method.detach_low_outputs) == (r".*/conv2", r".*/shortcut")
    assert pdqat_cifar10(2, "layerwise").method.eps_layer == pytest.approx(1 / 3)
    assert pdqat_cifar10(1, "baseline", "vanilla").method.baseline == "vanilla"
    # con-qat's final_table: seeds 0-2 from train_anyprec.py, 3-5 from train_vanilla.py
    assert [baseline_for_seed(s) for s in range(6)] == ["anyprec"] * 3 + ["vanilla"] * 3
    mixed = load_config("pdqat_cifar10_b1_mixed")
    assert mixed.method.eps_out == 0.1 and not mixed.method.layerwise and mixed.method.bits == 1
    launcher = open(os.path.join(os.path.dirname(__file__), "..", "launch", "pdqat.sh")).read()
    assert "name=dorefa" not in launcher and "--config.method.baseline=" in launcher


def test_full_precision_layers_spec_forms(tmp_path):
    params = {"a": {"conv1": {"kernel": 1}, "bn": {"scale": 1}}, "b": {"conv1": {"kernel": 1}}}
    (tmp_path / "method_state.json").write_text(json.dumps({"ranking": ["b/conv1", "a/conv1"]}))
    assert full_precision_layers("", params) == []
    assert full_precision_layers("a/conv1, b/conv1", params) == ["a/conv1", "b/conv1"]
    assert full_precision_layers(f"top:1:{tmp_path}", params) == ["b/conv1"]
    assert full_precision_layers(f"top:5:{tmp_path}/method_state.json", params) == ["b/conv1", "a/conv1"]
    with pytest.raises(MaskError, match="no layer of this model.*a/conv1"):
        full_precision_layers("a/conv9", params)
    with pytest.raises(MaskError, match="cannot read"):
        full_precision_layers(f"top:2:{tmp_path}/missing.json", params)
    with pytest.raises(MaskError, match="top:<k>"):
        full_precision_layers("top:x:y", params)
    c = load_config("pdqat_fashion_mnist")
    with pytest.raises(TypeError):
        c.quant.full_precision_layers = ["a"]  # a string field: names or top:k:path


def test_dual_ranking_file_round_trips_into_a_mixed_precision_run(tmp_path):
    from jaxquant import train
    c = load_config("pdqat_layerwise_fashion_mnist")
    c.dataset.update(name="digits", validation=0)
    c.model.update(depth=8, expand=1)
    model = models.build(c.model, 10)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)),
                                               train=False))["params"]
    mask = lambda p: quant_mask(p, list(c.quant.include), list(c.quant.exclude), strict=False)  # noqa: E731
    method = P.pdqat(optax.adam(1e-3), 2, mask=mask, eps_out=0.7, layerwise=True)
    latent = method.init(params)
    lams = {"stage3_block0/shortcut": 0.9, "stage1_block0/conv1": 0.5, "stage2_block0/conv2": 0.1}
    for name, v in lams.items():
        block, conv = name.split("/")
        latent["duals"]["layers"][block][conv] = jnp.asarray(v)
    state = method.final_state(latent)
    assert state["ranking"][:3] == list(lams)
    (tmp_path / "method_state.json").write_text(json.dumps(state))

    c = load_config("pdqat_cifar10_b1_mixed")  # con-qat's mixed runs: 1-bit PD-QAT, output constraint
    c.dataset.update(name="digits", validation=0)
    c.model.update(depth=8, expand=1)
    c.quant.full_precision_layers = f"top:2:{tmp_path}"
    mixed = train.build_experiment(c)
    flat = dict(zip(param_paths(mixed.mask), jax.tree.leaves(mixed.mask)))
    assert not flat["stage3_block0/shortcut/kernel"] and not flat["stage1_block0/conv1/kernel"]
    assert flat["stage2_block0/conv2/kernel"] and not flat["stem/kernel"]
    assert mixed.model.sw.full_precision_layers == ("stage3_block0/shortcut", "stage1_block0/conv1")
    latent = mixed.method.init(mixed.params)
    assert "layers" not in latent["duals"]
    projected = mixed.method.project(latent)
    np.testing.assert_array_equal(projected["stage3_block0"]["shortcut"]["kernel"],
                                  mixed.params["stage3_block0"]["shortcut"]["kernel"])
    assert len(np.unique(np.asarray(projected["stage2_block0"]["conv2"]["kernel"]))) == 2


@pytest.mark.slow
def test_layerwise_run_writes_ranked_duals_and_trains(tmp_path):
    from jaxquant import train
    c = load_config("pdqat_layerwise_fashion_mnist")
    c.dataset.update(name="digits", validation=0)
    c.model.update(depth=8, expand=1)
    c.method.update(eps_layer=1e-7, dual_update="step")  # D_l > eps: every lambda_l grows
    c.train.update(epochs=2, batch_size=64, log_every_steps=11)
    result = train.train_and_evaluate(c, str(tmp_path), log=lambda *_: None)
    assert result["test_accuracy"] > 0.5
    state = json.load(open(os.path.join(tmp_path, "method_state.json")))
    assert len(state["ranking"]) == 8 and all(v > 0 for v in state["lambda_layers"].values())
    ranked = [state["lambda_layers"][n] for n in state["ranking"]]
    assert ranked == sorted(ranked, reverse=True)


def test_pdqat_on_a_model_without_the_precision_switch_is_a_config_error(tmp_path):
    from conftest import load_config
    from jaxquant import train
    c = load_config("fp_digits")
    c.method = dict(name="pdqat", bits=2)
    c.train.update(steps=1)
    with pytest.raises(ConfigError, match="resnet20q"):
        train.train_and_evaluate(c, str(tmp_path / "w"), log=lambda *_: None)
