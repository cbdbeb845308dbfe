"""Mirror descent family and PMF (jaxquant.methods.mirror): identities, hand-checked steps, configs."""
import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

import jaxquant as jq
from jaxquant import config_check
from jaxquant.errors import ConfigError
from jaxquant.methods import base
from jaxquant.methods import mirror as M
from jaxquant.papers import mirror as paper

from conftest import REPO, load_config

ETA, BETA = 0.1, 2.0


# ----------------------------------------------------------------------------- helpers

def _problem():
    """A small nonlinear loss of a two-leaf weight pytree (shapes (3, 2) and (2,))."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    Y = jnp.asarray(rng.normal(size=(16,)), jnp.float32)
    w0 = {"k": jnp.asarray(0.5 * rng.normal(size=(3, 2)), jnp.float32), "b": jnp.array([0.3, -0.2])}

    def loss(w):
        h = jnp.tanh(X @ w["k"] + w["b"])
        return jnp.mean((h.sum(-1) - Y) ** 2)
    return w0, loss


def _run(method, latent, loss, steps):
    """Weights forward(latent_t, t), gradients w.r.t. the latent and latents over `steps` steps."""
    @jax.jit
    def step(latent, state, t):
        w, vjp = jax.vjp(lambda l: method.forward(l, t), latent)
        g = vjp(jax.grad(loss)(w))[0]
        upd, state = method.tx.update(g, state, latent)
        return optax.apply_updates(latent, upd), state, w, g

    state = method.tx.init(latent)
    weights, grads = [], []
    for t in range(steps):
        latent, state, w, g = step(latent, state, jnp.int32(t))
        weights.append(w)
        grads.append(g)
    return weights, grads, latent


def _close(a, b, **kw):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw), a, b)


def _step(method, latent, c, t=0):
    """One step of `method` on the linear loss sum(c * w): returns (new latent, gradient)."""
    @jax.jit
    def step(latent):
        def loss(l):
            w = method.forward(l, t)
            return sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(w)))
        g = jax.grad(loss)(latent)
        upd, _ = method.tx.update(g, method.tx.init(latent), latent)
        return optax.apply_updates(latent, upd), g
    return step(latent)


# ----------------------------------------------------------------------------- beta schedule

def test_beta_schedule_is_bts_to_the_ceil_of_t_over_bti_capped():
    beta = jq.beta_schedule(1.5, 2, 3.0)
    got = [float(beta(t)) for t in range(7)]
    np.testing.assert_allclose(got, [1.0, 1.5, 1.5, 2.25, 2.25, 3.0, 3.0], rtol=1e-6)


def test_beta_schedule_reaches_the_md_cap_without_overflow():
    beta = jq.beta_schedule(1.2, 1, 1e35)
    assert float(beta(10)) == pytest.approx(1.2 ** 10, rel=1e-5)
    assert float(beta(100_000)) == pytest.approx(1e35, rel=1e-6)


@pytest.mark.parametrize("bad", [dict(bts=0.0, bti=1, cap=1.0), dict(bts=1.1, bti=0, cap=1.0),
                                 dict(bts=1.1, bti=2.5, cap=1.0), dict(bts=1.1, bti=1, cap=0.0)])
def test_beta_schedule_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        jq.beta_schedule(**bad)


# ----------------------------------------------------------------------------- MD identities

@pytest.mark.parametrize("opt", [optax.sgd(0.05), optax.adam(0.05)], ids=["sgd", "adam"])
def test_md_tanh_and_md_tanh_s_follow_the_same_trajectory(opt):
    # constant beta = 2; equivalent inits x0 = tanh(beta y0): atanh(x_t) = beta y_t at every t.
    w0, loss = _problem()
    md, mds = jq.md_tanh(opt, BETA), jq.md_tanh_s(opt, BETA)
    x0 = jax.tree.map(lambda y: jnp.tanh(BETA * y), w0)
    w_md, g_md, _ = _run(md, x0, loss, 15)
    w_s, g_s, _ = _run(mds, w0, loss, 15)
    _close(w_md, w_s, rtol=2e-4, atol=2e-5)
    _close(g_md, g_s, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("opt", [optax.sgd(0.05), optax.adam(0.05)], ids=["sgd", "adam"])
def test_md_tanh_init_matches_md_tanh_s_init_at_beta_one(opt):
    w0, loss = _problem()
    w_md, _, _ = _run(jq.md_tanh(opt, 1.0), jq.md_tanh(opt, 1.0).init(w0), loss, 10)
    w_s, _, _ = _run(jq.md_tanh_s(opt, 1.0), jq.md_tanh_s(opt, 1.0).init(w0), loss, 10)
    _close(w_md, w_s, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("opt", [optax.sgd(0.05), optax.adam(0.05)], ids=["sgd", "adam"])
@pytest.mark.parametrize("levels", [2, 3])
def test_md_softmax_and_md_softmax_s_follow_the_same_trajectory(opt, levels):
    # u0 = softmax(beta ut0): log u_t = beta ut_t - const at every t.
    w0, loss = _problem()
    rng = np.random.default_rng(3)
    ut0 = jax.tree.map(lambda w: jnp.asarray(rng.normal(size=(levels, *w.shape)), jnp.float32), w0)
    u0 = jax.tree.map(lambda z: jax.nn.softmax(BETA * z, axis=0), ut0)
    md = jq.md_softmax(opt, BETA, levels=levels)
    mds = jq.md_softmax_s(opt, BETA, levels=levels)
    w_md, g_md, _ = _run(md, u0, loss, 15)
    w_s, g_s, _ = _run(mds, ut0, loss, 15)
    _close(w_md, w_s, rtol=2e-4, atol=2e-5)
    _close(g_md, g_s, rtol=2e-3, atol=1e-5)


def test_binary_md_softmax_s_with_level_logits_is_md_tanh_s_even_while_annealing():
    # ut = y q: softmax(beta y q) . q = tanh(beta y), and Adam is coordinatewise and
    # sign-equivariant, so ut stays y q.
    w0, loss = _problem()
    beta, opt = jq.beta_schedule(1.3, 3, 1e35), optax.adam(0.05)
    s = jq.md_softmax_s(opt, beta, logit_init="levels")
    t = jq.md_tanh_s(opt, beta)
    w_soft, _, _ = _run(s, s.init(w0), loss, 20)
    w_tanh, _, _ = _run(t, t.init(w0), loss, 20)
    _close(w_soft, w_tanh, rtol=2e-4, atol=2e-5)


def test_md_tanh_differs_from_md_tanh_s_when_beta_changes():
    # MD-tanh-S re-reads x = tanh(beta_t y) after beta grows; MD-tanh's x does not jump.
    w0, loss = _problem()
    beta, opt = jq.beta_schedule(2.0, 1, 1e35), optax.sgd(0.05)
    w_md, _, _ = _run(jq.md_tanh(opt, beta), jq.md_tanh(opt, beta).init(w0), loss, 3)
    w_s, _, _ = _run(jq.md_tanh_s(opt, beta), w0, loss, 3)
    assert not np.allclose(w_md[2]["k"], w_s[2]["k"], atol=1e-3)


# ----------------------------------------------------------------------------- hand-checked steps
# Loss sum(c * w) with c = 1, so dL/dx = 1; SGD lr 0.1, beta = 2, w0 = 0.5.

W0, C = jnp.array([0.5]), jnp.array([1.0])


def test_md_tanh_single_step():
    m = jq.md_tanh(optax.sgd(ETA), BETA)
    x1, g = _step(m, m.init(W0), C)
    np.testing.assert_allclose(g, [1.0])
    # x0 = tanh(0.5); x1 = tanh(atanh(x0) - eta beta g) = tanh(0.5 - 0.2)
    np.testing.assert_allclose(x1, [math.tanh(0.3)], rtol=1e-6)


def test_md_tanh_s_single_step_has_identity_backward():
    m = jq.md_tanh_s(optax.sgd(ETA), BETA)
    np.testing.assert_allclose(m.forward(W0, 0), [math.tanh(2 * 0.5)], rtol=1e-6)
    y1, g = _step(m, m.init(W0), C)
    np.testing.assert_allclose(g, [1.0])  # no tanh Jacobian
    np.testing.assert_allclose(y1, [0.4], rtol=1e-6)
    np.testing.assert_allclose(m.forward(y1, 1), [math.tanh(0.8)], rtol=1e-6)


def test_gd_tanh_single_step_uses_the_chain_rule():
    m = jq.gd_tanh(optax.sgd(ETA), BETA)
    y1, g = _step(m, m.init(W0), C)
    dtanh = 2.0 * (1 - math.tanh(1.0) ** 2)  # beta (1 - tanh^2(beta y0))
    np.testing.assert_allclose(g, [dtanh], rtol=1e-6)
    np.testing.assert_allclose(y1, [0.5 - ETA * dtanh], rtol=1e-6)


def test_md_softmax_single_step():
    m = jq.md_softmax(optax.sgd(ETA), BETA, logit_init="levels")
    u0 = m.init(W0)  # softmax(w0 q) = (s(-1), s(1))
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    np.testing.assert_allclose(u0, [[sig(-1.0)], [sig(1.0)]], rtol=1e-6)
    u1, g = _step(m, u0, C)
    np.testing.assert_allclose(g, [[-1.0], [1.0]])  # dL/du = c q
    a, b = sig(-1.0) * math.exp(BETA * ETA), sig(1.0) * math.exp(-BETA * ETA)
    np.testing.assert_allclose(u1, [[a / (a + b)], [b / (a + b)]], rtol=1e-6)
    np.testing.assert_allclose(m.forward(u1, 1), [math.tanh(0.3)], rtol=1e-5)


def test_md_softmax_s_single_step_has_identity_backward():
    m = jq.md_softmax_s(optax.sgd(ETA), BETA, logit_init="levels")
    ut1, g = _step(m, m.init(W0), C)
    np.testing.assert_allclose(g, [[-1.0], [1.0]])  # dL/dut := dL/du
    np.testing.assert_allclose(ut1, [[-0.4], [0.4]], rtol=1e-6)
    np.testing.assert_allclose(m.forward(ut1, 1), [math.tanh(0.8)], rtol=1e-6)


def test_pmf_single_step_uses_the_approximate_jacobian():
    m = jq.pmf(optax.sgd(ETA), BETA, logit_init="levels")
    ut0 = np.array([[-0.5], [0.5]])
    ut1, g = _step(m, m.init(W0), C)
    u = np.exp(BETA * ut0) / np.exp(BETA * ut0).sum()
    gu = np.array([[-1.0], [1.0]])
    want = BETA * (gu - (gu * u).sum() * u)  # beta g_u (I - u u^T)
    np.testing.assert_allclose(g, want, rtol=1e-6)
    np.testing.assert_allclose(ut1, ut0 - ETA * want, rtol=1e-6)


def test_pmf_custom_vjp_matches_the_formula_and_not_the_true_jacobian():
    rng = np.random.default_rng(1)
    ut = jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)
    beta = jnp.float32(3.0)
    u, got = jax.jit(lambda z, g: (lambda out, vjp: (out, vjp(g)[0]))(
        *jax.vjp(lambda v: M.pmf_softmax(v, beta), z)))(ut, g)
    un, gn = np.asarray(u), np.asarray(g)
    want = 3.0 * (gn - (gn * un).sum(0, keepdims=True) * un)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u, jax.nn.softmax(3.0 * ut, axis=0), rtol=1e-6)
    true = jax.jit(lambda z, g: jax.vjp(lambda v: jax.nn.softmax(beta * v, axis=0), z)[1](g)[0])(ut, g)
    assert not np.allclose(got, true, atol=1e-3)


@pytest.mark.parametrize("levels", [2, 3])
def test_fused_simplex_weights_equal_softmax_then_expected_weight(levels):
    # The methods' fused forward / backward vs the unfused composition of the paper's maps.
    rng = np.random.default_rng(2)
    ut = jnp.asarray(rng.normal(size=(levels, 4, 5)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    beta, q = jnp.float32(3.0), M.level_values(levels)
    qn = np.asarray(q, np.float32)[:, None, None]
    mean = lambda u: jnp.sum(u * qn, axis=0)  # noqa: E731  (plain autodiff)
    st_softmax = jq.quantizers.straight_through(lambda z: M.simplex_softmax(z, beta))
    pairs = [(M.softmax_weight_st, lambda v: mean(st_softmax(v))),
             (M.pmf_weight, lambda v: mean(M.pmf_softmax(v, beta)))]
    for fused, composed in pairs:
        w, vjp = jax.vjp(lambda v: fused(v, beta, q), ut)
        w_ref, vjp_ref = jax.vjp(composed, ut)
        np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(vjp(g)[0], vjp_ref(g)[0], rtol=1e-5, atol=1e-6)
    u = jax.nn.softmax(ut, axis=0)
    w, vjp = jax.vjp(lambda v: M.expected_weight(v, q), u)
    np.testing.assert_allclose(w, mean(u), rtol=1e-6)
    np.testing.assert_allclose(vjp(g)[0], np.asarray(g)[None] * qn, rtol=1e-6)
    if levels == 2:  # sum_l q_l softmax(beta ut)_l = tanh(beta (ut_1 - ut_0) / 2)
        want = np.tanh(3.0 * (np.asarray(ut)[1] - np.asarray(ut)[0]) / 2)
        np.testing.assert_allclose(M.softmax_weight_st(ut, beta, q), want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- numerics

def test_tanh_dual_step_is_finite_at_and_near_plus_minus_one():
    x = jnp.array([1.0, -1.0, 1 - 1e-7, -0.9999999, 1.0, -1.0])
    u = jnp.array([1.0, -1.0, 1e3, -1e3, -1e-3, 1e-3])
    for beta in (1.0, 1e4, 1e35):
        out = M.tanh_dual_step(x, u, jnp.float32(beta))
        assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1)
    # a saturated weight still moves back when the step points inward
    back = M.tanh_dual_step(jnp.array([1.0, -1.0]), jnp.array([-8.0, 8.0]), jnp.float32(1.0))
    assert 0 < back[0] < 0.5 and -0.5 < back[1] < 0


_tanh_step = jax.jit(M.tanh_dual_step)
_softmax_step = jax.jit(M.softmax_dual_step)
_unit = st.floats(-1.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(x=st.floats(-0.95, 0.95), u1=_unit, u2=_unit, beta=st.floats(0.25, 3.0))
def test_tanh_mirror_steps_add_in_the_dual_space(x, u1, u2, beta):
    # atanh(x) is the dual coordinate: two steps u1, u2 = one step u1 + u2.
    b = jnp.float32(beta)
    x, u1, u2 = (jnp.array([v], jnp.float32) for v in (x, u1, u2))
    two = _tanh_step(_tanh_step(x, u1, b), u2, b)
    np.testing.assert_allclose(two, _tanh_step(x, u1 + u2, b), atol=1e-3)
    np.testing.assert_allclose(_tanh_step(x, 0 * u1, b), x, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(logits=st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3),
       u1=st.lists(_unit, min_size=3, max_size=3), u2=st.lists(_unit, min_size=3, max_size=3),
       beta=st.floats(0.25, 3.0))
def test_softmax_mirror_steps_stay_on_the_simplex_and_add_in_log_space(logits, u1, u2, beta):
    b = jnp.float32(beta)
    p = jax.nn.softmax(jnp.array(logits, jnp.float32))
    u1, u2 = jnp.array(u1, jnp.float32), jnp.array(u2, jnp.float32)
    two = _softmax_step(_softmax_step(p, u1, b), u2, b)
    np.testing.assert_allclose(two.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(two, _softmax_step(p, u1 + u2, b), atol=1e-5)
    np.testing.assert_allclose(two, jax.nn.softmax(jnp.log(p) + b * (u1 + u2)), atol=1e-5)


def test_mirror_step_softmax_is_finite_at_huge_beta_and_on_vertices():
    p = jnp.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]).T  # 2 points on the 3-simplex, levels first
    u = jnp.array([[-1.0, 0.0, 1.0], [1e3, 1e3, -1e3]]).T
    tx = jq.mirror_step("softmax", beta=1e35)
    upd, _ = tx.update(u, tx.init(p), p)
    new = p + upd
    assert np.all(np.isfinite(new))
    np.testing.assert_allclose(new.sum(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(new[:, 0], [0.0, 0.0, 1.0], atol=1e-6)


def test_forward_passes_are_finite_at_the_md_cap():
    w = {"k": jnp.array([[0.3, -2.0], [1e-3, 0.0]])}
    beta = jnp.float32(1e35)
    for make in (jq.md_tanh_s, jq.gd_tanh, jq.md_softmax_s, jq.pmf):
        m = make(optax.sgd(0.1), beta)

        @jax.jit
        def fwd_bwd(w):
            out, vjp = jax.vjp(lambda l: m.forward(l, 0), m.init(w))
            return out, vjp(out)
        out, grads = fwd_bwd(w)
        assert np.all(np.isfinite(out["k"])), make.__name__
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_mirror_step_composes_in_optax_chain_and_jit():
    x = {"a": jnp.array([0.2, -0.9, 0.99])}
    tx = optax.chain(optax.adam(1e-2), jq.mirror_step("tanh", beta=jq.beta_schedule(1.1, 1, 1e35)))
    state = tx.init(x)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    for _ in range(3):
        upd, state = step({"a": jnp.array([1.0, -1.0, 1.0])}, state, x)
        x = optax.apply_updates(x, upd)
    assert np.all(np.abs(x["a"]) < 1)
    assert int(state[1].count) == 3
    with pytest.raises(ValueError):
        jq.mirror_step("sparsemax")


# ----------------------------------------------------------------------------- levels, rounding, masks

def test_ternary_tanh_s_rounds_at_plus_minus_half():
    m = jq.md_tanh_s(optax.sgd(0.1), BETA, levels=3)
    y = jnp.array([-0.7, -0.5, -0.49, 0.0, 0.49, 0.5, 0.7])
    np.testing.assert_array_equal(m.project(y), [-1, -1, 0, 0, 0, 1, 1])
    # shifted tanh: 1/2 [tanh(2 (y + 1/2)) + tanh(2 (y - 1/2))]
    want = [0.5 * (math.tanh(2 * (v + 0.5)) + math.tanh(2 * (v - 0.5))) for v in np.asarray(y)]
    np.testing.assert_allclose(m.forward(y, 0), want, rtol=1e-5, atol=1e-7)
    big = jq.md_tanh_s(optax.sgd(0.1), 1e4, levels=3).forward(jnp.array([-0.8, 0.1, 0.9]), 0)
    np.testing.assert_allclose(big, [-1, 0, 1], atol=1e-6)


def test_simplex_project_returns_hard_levels_in_the_param_shape():
    ut = jnp.moveaxis(jnp.array([[[0.1, 0.5, 0.2], [0.9, 0.0, 0.1]],
                                 [[0.0, 0.0, 0.3], [0.2, 0.8, 0.1]]]), -1, 0)  # (3, 2, 2)
    for make in (jq.md_softmax, jq.md_softmax_s, jq.pmf):
        m = make(optax.sgd(0.1), BETA, levels=3)
        np.testing.assert_array_equal(jax.jit(m.project)(ut), [[0, -1], [1, 0]])
        w = {"k": jnp.ones((4, 5)), "b": jnp.zeros((5,))}
        latent = jax.eval_shape(m.init, w)
        assert latent["k"].shape == (3, 4, 5) and latent["b"].shape == (3, 5)
        shapes = lambda f, *a: jax.tree.map(lambda x: x.shape, jax.eval_shape(f, *a))  # noqa: E731
        assert shapes(m.project, latent) == shapes(lambda v: v, w)
        assert shapes(lambda l: m.forward(l, 0), latent) == shapes(lambda v: v, w)


def test_level_values():
    np.testing.assert_array_equal(M.level_values(2), [-1, 1])
    np.testing.assert_array_equal(M.level_values(3), [-1, 0, 1])
    np.testing.assert_array_equal(M.level_values(4), [-2, -1, 1, 2])


def test_random_logit_init_keeps_the_scale_of_w0():
    w = {"k": jnp.full((30, 20), 0.1).at[0, 0].set(-0.2), "b": 0.1 * jnp.arange(-5.0, 5.0)}
    ut = jax.jit(lambda w: M.initial_logits(w, 2, "random", seed=0))(w)
    assert float(jnp.max(jnp.abs(ut["k"]))) <= 0.2
    assert float(jnp.std(ut["k"])) > 0.05  # independent draws, not w0 copies
    np.testing.assert_allclose(float(jnp.std(ut["b"])), float(jnp.std(w["b"])), rtol=0.5)
    again = jax.jit(lambda w: M.initial_logits(w, 2, "random", seed=0))(w)
    np.testing.assert_array_equal(ut["k"], again["k"])


@pytest.mark.parametrize("make", [jq.md_tanh, jq.md_softmax, jq.md_tanh_s, jq.pmf])
def test_unmasked_leaves_are_trained_in_full_precision_by_the_same_optimizer(make):
    w = {"k": jnp.array([[0.3, -0.2]]), "bias": jnp.array([0.25, -0.5])}
    mask = lambda p: {"k": True, "bias": False}  # noqa: E731
    opt = optax.sgd(0.1)
    m = make(opt, BETA, mask=mask)
    latent = m.init(w)
    np.testing.assert_array_equal(latent["bias"], w["bias"])
    new, _ = _step(m, latent, {"k": 1.0, "bias": jnp.array([1.0, 2.0])})
    np.testing.assert_allclose(new["bias"], [0.15, -0.7], rtol=1e-6)
    np.testing.assert_allclose(m.project(new)["bias"], [0.15, -0.7], rtol=1e-6)
    assert set(np.unique(np.asarray(m.project(new)["k"]))) <= {-1.0, 1.0}


# ----------------------------------------------------------------------------- config

class _Cfg(dict):
    def __getattr__(self, k):
        return self[k]


def _ctx(**method):
    cfg = _Cfg(method=_Cfg(**method), seed=0)
    opt = optax.sgd(0.1)
    return base.Context(config=cfg, optimizer=opt, learning_rate=lambda s: 0.1,
                        mask=lambda p: jax.tree.map(lambda _: True, p), steps_per_epoch=10)


@pytest.mark.parametrize("name", sorted(M.DEFAULTS))
def test_from_config_builds_every_registered_method(name):
    m = jq.methods.build(name, _ctx(name=name, **M.DEFAULTS[name]))
    latent = m.init({"k": jnp.array([[0.3, -0.2]])})
    assert m.project(latent)["k"].shape == (1, 2)


def test_from_config_reports_bad_values_as_config_errors():
    with pytest.raises(ConfigError, match="levels"):
        jq.methods.build("md_tanh", _ctx(name="md_tanh", levels=3))
    with pytest.raises(ConfigError, match="bti"):
        jq.methods.build("pmf", _ctx(name="pmf", bti=0))
    with pytest.raises(ConfigError, match="logit_init"):
        jq.methods.build("pmf", _ctx(name="pmf", logit_init="zeros"))


def test_paper_configs_hold_the_methods_table():
    c = load_config("pmf_cifar100")
    assert (c.method.name, c.dataset.name, c.model.name) == ("pmf", "cifar100", "resnet18")
    assert (c.optimizer.lr, c.schedule.factor, c.method.bts, c.method.bti) == (1e-3, 0.3, 1.01, 100)
    assert (c.optimizer.weight_decay, c.method.beta_max, c.train.steps) == (1e-4, 1e4, 100_000)
    assert (c.schedule.kind, c.schedule.every, c.train.eval_every_steps) == ("piecewise", 30_000, 100)
    assert c.dataset.validation == 5_000 and c.train.select_best and not c.model.affine_bn
    assert tuple(c.quant.include) == (".*",) and c.model.init == "xavier_uniform"
    v = load_config("md_softmax_cifar10_vgg16")
    assert (v.optimizer.lr, v.schedule.factor, v.method.bts, v.method.bti) == (1e-2, 0.2, 1.05, 500)
    assert v.optimizer.weight_decay == 0.0 and v.method.beta_max == 1e35
    t = load_config("md_tanh_tiny_imagenet_resnet18")
    assert t.dataset.name.startswith("tiny_imagenet:") and t.model.stem_stride == 2


def test_every_mirror_config_file_is_valid_and_uses_only_known_method_keys():
    names = [os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))]
    ours = [n for n in names if n.split("_")[0] in ("md", "pmf", "gd")]
    assert len(ours) >= 29
    for n in ours:
        c = load_config(n)
        config_check.validate(c)
        assert set(c.method) - {"name"} <= set(M.DEFAULTS[c.method.name]), n
    cells = {(m, d, n) for (d, n) in paper.TABLE for m in paper.METHODS}
    assert {f"{m}_{d}_{n}" for m, d, n in cells} <= set(ours)


# ----------------------------------------------------------------------------- end to end

def test_md_tanh_s_digits_binary_reaches_95_percent(tmp_path):
    from jaxquant import train
    result = train.train_and_evaluate(load_config("md_tanh_s_digits"), str(tmp_path / "run"),
                                      log=lambda *_: None)
    assert result["test_accuracy"] >= 0.95, result
    summary = open(tmp_path / "run" / "summary.txt").read()
    assert "head" in summary


@pytest.mark.slow
def test_pmf_trains_through_the_trainer_with_ternary_levels(tmp_path):
    from jaxquant import train
    c = load_config("md_tanh_s_digits")
    c.model.features = (32,)
    c.method = dict(name="pmf", levels=3, bts=1.2, bti=10, beta_max=1e4)
    c.train.epochs = 2
    result = train.train_and_evaluate(c, str(tmp_path / "run"), log=lambda *_: None)
    assert result["test_accuracy"] > 0.5, result


def test_compose_optax_notebook_trains_a_users_flax_model_binary():
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(os.path.join(REPO, "examples", "compose_optax.ipynb"), as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + env_path if env_path else "")
    try:  # the kernel inherits the environment: import this worktree's jaxquant, on CPU
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": REPO}}).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
        if not env_path:
            del os.environ["PYTHONPATH"]
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "kernel levels: [-1.0, 1.0]" in text
    acc = float(text.split("binary test accuracy:")[1].split()[0])
    assert acc >= 0.9, text
