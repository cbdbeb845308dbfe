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


# ----------------------------------------------------------------------------- official-code options
# Each rule of md-bnn / pmf that differs from the paper's equation, against an independent
# numpy evaluation of the code's expression on small inputs (docs/fidelity.md).

def _np_softmax(z, axis=0):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("levels", [2, 3])
def test_pmf_code_jacobian_softmaxes_the_projected_weights_again(levels):
    # pmf's update_auxgradient: w = softmax(beta * p.data) with p.data = u = softmax(beta ut),
    # then g_ut = beta * g_u @ (I - w w^T), one d x d matrix per weight (as torch.bmm does).
    rng = np.random.default_rng(5)
    ut = rng.normal(size=(levels, 6)).astype(np.float32)
    c = rng.normal(size=(6,)).astype(np.float32)  # loss sum(c * w): dL/dw = c
    beta = 4.0
    q = np.asarray(M.level_values(levels))
    u = _np_softmax(beta * ut.astype(np.float64))
    u2 = _np_softmax(beta * u)  # the second softmax, same beta
    g_u = q[:, None] * c[None]  # dL/du_l = q_l c
    want = {}
    for name, v in (("pmf_code", u2), ("paper", u)):
        rows = [beta * g_u[:, j] @ (np.eye(levels) - np.outer(v[:, j], v[:, j])) for j in range(6)]
        want[name] = np.stack(rows, axis=1)
    for name in ("pmf_code", "paper"):
        fused = jax.grad(lambda z: jnp.sum(c * M.pmf_weight(z, jnp.float32(beta), M.level_values(levels),
                                                              name)))(jnp.asarray(ut))
        composed = jax.grad(lambda z: jnp.sum(c * M.expected_weight(
            M.pmf_softmax(z, jnp.float32(beta), name), M.level_values(levels))))(jnp.asarray(ut))
        np.testing.assert_allclose(fused, want[name], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(composed, want[name], rtol=1e-4, atol=1e-6)
    assert not np.allclose(want["pmf_code"], want["paper"], atol=1e-3)


def test_pmf_code_jacobian_starves_the_winning_logit_once_beta_is_large():
    # beta = 50, u = softmax(beta ut) = (0.1, 0.9)-ish: u' = softmax(50 u) is one-hot at level
    # 1, so I - u'u'^T = diag(1, 0): the losing logit gets beta g_u0, the winning one nothing.
    ut = jnp.array([[0.0], [0.044]], jnp.float32)  # u ~ (0.1, 0.9) at beta 50
    beta, q = jnp.float32(50.0), M.level_values(2)
    grad = {name: np.asarray(jax.grad(lambda z: jnp.sum(M.pmf_weight(z, beta, q, name)))(ut))
            for name in M.JACOBIANS}
    u = _np_softmax(50.0 * np.array([0.0, 0.044]))
    u2 = _np_softmax(50.0 * u)
    assert u2[1] > 1 - 1e-15
    np.testing.assert_allclose(grad["paper"][:, 0], 50 * (q - (q * u).sum() * u), rtol=1e-4)
    np.testing.assert_allclose(grad["pmf_code"][0, 0], 50 * q[0], rtol=1e-6)  # g_u0 = q_0
    assert abs(grad["pmf_code"][1, 0]) < 1e-6 * abs(grad["paper"][1, 0])


def _np_md_bnn_tanh(x, u, beta, exp):
    """MDAadam.py's tanh branch in numpy float32 (u = -step_size * Adam direction, so the
    code's -2 step_size beta d = 2 beta u); `exp` = exp(2 beta u) supplied by the caller."""
    f, one, eps = np.float32, np.float32(1.0), np.float32(1e-20)
    x, exp = f(x), f(exp)
    with np.errstate(all="ignore"):
        e = ((one + x) / (one - x + eps)) * exp
        return (e - one) / (e + one + eps)


def test_md_bnn_tanh_step_is_the_official_float32_expression():
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.uniform(-1, 1, 500), [-1.0, 1.0, -1.0, 1.0, 0.0]]).astype(np.float32)
    u = np.concatenate([rng.normal(0, 0.3, 500), [3.0, -3.0, 50.0, -50.0, 0.0]]).astype(np.float32)
    beta = np.float32(7.0)
    got = np.asarray(jax.jit(M.tanh_step_md_bnn)(jnp.asarray(x), jnp.asarray(u), jnp.float32(beta)))
    ex = np.asarray(jax.jit(jnp.exp)(jnp.asarray(np.float32(2) * beta * u)))
    # bit-exact given the exp primitive; XLA's float32 exp is within 2 ulp of numpy's
    np.testing.assert_array_equal(got, _np_md_bnn_tanh(x, u, beta, ex))
    finite = np.isfinite(ex) & (ex > np.finfo(np.float32).tiny)
    with np.errstate(over="ignore"):
        np.testing.assert_array_max_ulp(ex[finite], np.exp(np.float32(2) * beta * u)[finite], maxulp=2)
    assert np.isnan(got[-3])  # x = -1 pushed up by 2 beta u = 700: 0 * exp(700) = 0 * inf, as in the code
    # and it is the paper's tanh(atanh(x) + beta u) away from saturation
    inner = np.abs(x) < 0.9
    np.testing.assert_allclose(got[inner], np.tanh(np.arctanh(x[inner].astype(np.float64))
                                                   + 7.0 * u[inner]), atol=2e-5)


def test_md_bnn_tanh_step_absorbs_minus_one_and_nearly_plus_one():
    step = jax.jit(M.tanh_step_md_bnn)
    one = jnp.float32(1.0)
    # x = -1: (1 + x) = 0, so e = 0 and x' = -1 / (1 + 1e-20) = -1 for any finite exp
    for bu in (-40.0, -1.0, 0.5, 14.0, 40.0):
        assert float(step(-one, jnp.float32(bu), one)) == -1.0
    # x = +1: e = 2 / 1e-20 * exp(2 beta u); (e - 1) / (e + 1) rounds to 1 until e < ~2^26,
    # i.e. beta |u| > (log(2e20) - log(2^26)) / 2 = 14.36
    for bu in (10.0, 0.0, -5.0, -14.0):
        assert float(step(one, jnp.float32(bu), one)) == 1.0
    assert float(step(one, jnp.float32(-15.0), one)) < 1.0
    # a push further up that overflows e (2e20 exp(80) > float32 max) gives inf / inf, as in the code
    assert math.isnan(float(step(one, jnp.float32(40.0), one)))
    threshold = (math.log(2e20) - math.log(2.0 ** 26)) / 2
    assert 14.0 < threshold < 15.0
    # exp underflow sends x to exactly -1, from where it never returns
    x = step(jnp.float32(0.3), jnp.float32(-60.0), one)
    assert float(x) == -1.0 and float(step(x, jnp.float32(10.0), one)) == -1.0
    # the library default ('stable': clipped atanh) lets both come back
    assert float(M.tanh_dual_step(-one, jnp.float32(10.0), one)) > 0.9
    assert float(M.tanh_dual_step(one, jnp.float32(-10.0), one)) < -0.9


def test_md_tanh_with_md_bnn_dual_step_keeps_saturated_weights_through_optax():
    # x0 = (-1, 1, 0): loss -sum(x) pulls every weight up by a Adam step of lr 0.5 at beta 2
    # (beta |u| = 1 < 14): -1 stays, +1 stays, 0 moves to tanh(atanh(0) + 2 * 0.5) = tanh(1).
    for dual_step, want in (("md_bnn", [-1.0, 1.0, math.tanh(1.0)]),
                            ("stable", None)):
        m = jq.md_tanh(optax.adam(0.5), 2.0, dual_step=dual_step)
        x1, _ = _step(m, jnp.array([-1.0, 1.0, 0.0]), -jnp.ones(3))
        if want is not None:
            np.testing.assert_allclose(x1, want, rtol=1e-5)  # Adam's float32 bias corrections
            assert float(x1[0]) == -1.0 and float(x1[1]) == 1.0
        else:
            assert float(x1[0]) > -1.0  # clipped atanh: the saturated weight moves


def _np_md_bnn_softmax(p, u, beta):
    """simplex_utils.normalize_stable in numpy float32 (level axis 0): p * (exp(beta u - max) + 1e-20), normalized."""
    p, z = np.float32(p), np.float32(beta) * np.float32(u)
    a = np.exp(z - z.max(axis=0, keepdims=True)) + np.float32(1e-20)
    v = p * a
    return v / v.sum(axis=0, keepdims=True)


def test_md_bnn_softmax_step_matches_the_official_expression():
    rng = np.random.default_rng(7)
    p = _np_softmax(rng.normal(size=(2, 50))).astype(np.float32)
    u = rng.normal(0, 0.5, size=(2, 50)).astype(np.float32)
    got = jax.jit(M.softmax_step_md_bnn)(jnp.asarray(p), jnp.asarray(u), jnp.float32(3.0))
    np.testing.assert_allclose(got, _np_md_bnn_softmax(p, u, 3.0), rtol=2e-6, atol=1e-12)
    # the 1e-20 floor: a step of beta u = -1000 leaves the level at 1e-20 of the other, not 0
    p = np.array([[0.5], [0.5]], np.float32)
    got = jax.jit(M.softmax_step_md_bnn)(jnp.asarray(p), jnp.array([[-1000.0], [0.0]]), jnp.float32(1.0))
    np.testing.assert_allclose(got[:, 0], [1e-20, 1.0], rtol=1e-6)
    stable = M.softmax_dual_step(jnp.asarray(p), jnp.array([[-1000.0], [0.0]]), jnp.float32(1.0))
    assert float(stable[0, 0]) == 0.0  # exp(-1000) underflows in the log-space step


def test_md_bnn_softmax_step_keeps_an_underflowed_level_at_zero():
    step = jax.jit(M.softmax_step_md_bnn)
    p = jnp.array([[1e-30], [1.0]], jnp.float32)
    # p_0 (exp(-50) + 1e-20) = 1e-30 * 1.02e-20 underflows: the level is exactly 0 ...
    p1 = step(p, jnp.array([[-50.0], [0.0]]), jnp.float32(1.0))
    assert float(p1[0, 0]) == 0.0 and float(p1[1, 0]) == 1.0
    # ... and stays 0 however strongly the gradient favours it afterwards
    p2 = step(p1, jnp.array([[80.0], [0.0]]), jnp.float32(1.0))
    assert float(p2[0, 0]) == 0.0
    # the library default recovers it (log max(p, tiny) + beta u)
    assert float(M.softmax_dual_step(p1, jnp.array([[100.0], [0.0]]), jnp.float32(1.0))[0, 0]) > 0.5


def test_md_softmax_takes_dual_step_and_rejects_unknown_ones():
    m = jq.md_softmax(optax.sgd(ETA), BETA, logit_init="levels", dual_step="md_bnn")
    u0 = m.init(W0)
    u1, _ = _step(m, u0, C)  # g_u = (-1, 1): u (exp(beta eta (1, -1) - max) + 1e-20), normalized
    a = np.asarray(u0)[:, 0] * (np.exp(BETA * ETA * np.array([1.0, -1.0]) - BETA * ETA) + 1e-20)
    np.testing.assert_allclose(u1[:, 0], a / a.sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="dual_step"):
        jq.mirror_step("tanh", 1.0, dual_step="exact")
    with pytest.raises(ConfigError, match="config.method.jacobian"):
        jq.methods.build("pmf", _ctx(name="pmf", jacobian="md-bnn"))
    with pytest.raises(ConfigError, match="config.method.dual_step"):
        jq.methods.build("md_tanh", _ctx(name="md_tanh", dual_step="clip"))


def test_xavier_wide_bound_counts_d_times_the_fan_out():
    # conv (3, 3, 4, 8) with d = 2: fan_in = 9 * 4 = 36, wide fan_out = 2 * 9 * 8 = 144
    assert M.xavier_wide_bound((3, 3, 4, 8), 2) == pytest.approx(math.sqrt(6 / 180))
    # dense (5, 7), d = 3: 5 + 21
    assert M.xavier_wide_bound((5, 7), 3) == pytest.approx(math.sqrt(6 / 26))


def test_xavier_wide_logits_follow_the_wide_layer_bound_and_normal_biases():
    w = {"conv": jnp.zeros((3, 3, 16, 32)), "dense": jnp.zeros((40, 30)), "b": jnp.zeros((2000,))}
    ut = M.initial_logits(w, 2, "xavier_wide", seed=1)
    assert ut["conv"].shape == (2, 3, 3, 16, 32) and ut["b"].shape == (2, 2000)
    for name, bound in (("conv", math.sqrt(6 / (144 + 2 * 288))), ("dense", math.sqrt(6 / (40 + 60)))):
        a = np.asarray(ut[name])
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.98 * bound  # thousands of draws fill the interval
        assert np.std(a) == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform(-b, b)
    assert np.std(np.asarray(ut["b"])) == pytest.approx(0.1, rel=0.05)  # normal(0, 0.1), w0 unused
    torch = pytest.importorskip("torch")
    wide = torch.empty(2 * 32, 16, 3, 3)  # PyTorch's SConv2d weight: (d * out, in, kh, kw)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(wide)
    assert math.sqrt(6 / (fan_in + fan_out)) == pytest.approx(M.xavier_wide_bound((3, 3, 16, 32), 2))


def test_vgg16_table_configs_give_every_conv_and_fc_a_quantized_bias():
    from jaxquant import masks, models
    c = load_config("pmf_cifar10_vgg16")
    assert c.model.use_bias is True

    def shapes(model_cfg):  # the param tree without running VGG-16 on the CPU
        net = models.build(model_cfg, 10)
        return jax.eval_shape(lambda k: net.init(k, jnp.zeros((1, 8, 8, 3)), train=False),
                              jax.random.PRNGKey(0))["params"]

    params = shapes(c.model)
    layers = ["stem"] + [f"conv{i}" for i in range(1, 13)] + ["fc0", "fc1", "head"]
    assert all("bias" in params[n] for n in layers)
    mask = masks.quant_mask(params, c.quant.include, c.quant.exclude)
    assert all(mask[n]["bias"] and mask[n]["kernel"] for n in layers)
    # the config's method turns a (small) conv's bias into binary levels like its kernel
    small = {"conv5": {"kernel": jnp.full((3, 3, 2, 4), 0.1), "bias": jnp.array([0.3, -0.2, 0.1, 0.05])}}
    m = jq.methods.build("pmf", base.Context(config=c, optimizer=optax.adam(1e-3),
                                             learning_rate=lambda s: 1e-3,
                                             mask=lambda p: masks.quant_mask(p, c.quant.include),
                                             steps_per_epoch=1))
    hard = m.project(m.init(small))
    assert set(np.unique(np.asarray(hard["conv5"]["bias"]))) <= {-1.0, 1.0}
    plain = dict(c.model)
    del plain["use_bias"]  # jaxquant's default VGG: biases only on the head
    assert [n for n in layers if "bias" in shapes(plain)[n]] == ["head"]


def test_validation_is_test_trains_on_all_of_train_and_selects_on_test():
    from jaxquant import data
    import ml_collections
    cfg = lambda **kw: ml_collections.ConfigDict(dict(name="digits", data_dir="", augment="", **kw))  # noqa: E731
    honest = data.load(cfg(validation=100, validation_is_test=False))
    code = data.load(cfg(validation=0, validation_is_test=True))
    assert (len(honest.train.labels), len(honest.validation.labels)) == (1337, 100)
    assert len(code.train.labels) == 1437  # all of train
    np.testing.assert_array_equal(code.validation.labels, code.test.labels)
    np.testing.assert_array_equal(code.validation.images, code.test.images)
    with pytest.raises(data.DataError, match="config.dataset.validation=0"):
        data.load(cfg(validation=100, validation_is_test=True))


def test_tiny_imagenet_table_protocol_trains_on_all_images_and_validates_on_val(tmp_path):
    from jaxquant import data
    from test_data import make_tiny_imagenet
    make_tiny_imagenet(tmp_path / "tin")  # 3 classes x 3 train images, 3 val images
    c = load_config("pmf_tiny_imagenet_resnet18")
    c.dataset.update(name=f"tiny_imagenet:{tmp_path / 'tin'}", data_dir=str(tmp_path))
    d = data.load(c.dataset)
    assert len(d.train.labels) == 9 and len(d.test.labels) == 3
    np.testing.assert_array_equal(d.validation.labels, d.test.labels)
    c.dataset.update(validation_is_test=False, validation=2)  # the honest protocol
    d = data.load(c.dataset)
    assert len(d.train.labels) == 7 and len(d.validation.labels) == 2


def test_select_on_test_reports_the_best_test_accuracy_of_the_run(tmp_path):
    import json
    from jaxquant import train
    c = load_config("md_tanh_s_digits")
    c.model.features = (32,)
    c.dataset.update(validation=0, validation_is_test=True)
    c.train.update(epochs=1, eval_every_steps=4, select_best=True)
    result = train.train_and_evaluate(c, str(tmp_path / "run"), log=lambda *_: None)
    evals = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    tests = [r["test_accuracy"] for r in evals if "test_accuracy" in r]
    assert len(tests) >= 4
    assert result["test_accuracy"] == pytest.approx(max(tests))
    assert result["best_val_accuracy"] == pytest.approx(max(tests))


def test_table_configs_select_the_official_code_options():
    want = dict(md_tanh_s={}, md_tanh=dict(dual_step="md_bnn"),
                md_softmax_s=dict(logit_init="xavier_wide"),
                md_softmax=dict(dual_step="md_bnn", logit_init="xavier_wide"),
                pmf=dict(jacobian="pmf_code", logit_init="xavier_wide"))
    for (dataset, net), cells in paper.TABLE.items():
        for method in cells:
            c = load_config(f"{method}_{dataset}_{net}")
            assert {k: c.method[k] for k in ("dual_step", "logit_init", "jacobian") if k in c.method} \
                == want[method], (method, dataset, net)
            assert c.model.get("use_bias", None) is (True if net == "vgg16" else None)
            if dataset == "tiny_imagenet":
                assert c.dataset.validation_is_test and c.dataset.validation == 0
            else:
                assert not c.dataset.validation_is_test and c.dataset.validation == 5_000
    assert load_config("pmf_cifar100").method.jacobian == "pmf_code"
    # the library defaults follow the papers' equations
    assert M.DEFAULTS["pmf"]["jacobian"] == "paper" and M.DEFAULTS["md_tanh"]["dual_step"] == "stable"
    from jaxquant import compare
    for m in want:  # the CPU comparisons run the published methods too
        preset = compare.PRESETS[m]["method"]
        assert {k: preset[k] for k in want[m]} == want[m]
    assert compare.PRESETS["pmf_ternary"]["method"]["jacobian"] == "pmf_code"


@pytest.mark.parametrize("script", ["md.sh", "pmf.sh"])
def test_launchers_run_every_table_config_and_honest_selects_on_train(script, tmp_path):
    # A stand-in for python records each `jaxquant.main` command and writes its result.json.
    import subprocess
    import sys
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
if [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi
echo "$@" >> "$CALLS"
while [ $# -gt 0 ]; do
  if [ "$1" = "--workdir" ]; then mkdir -p "$2"; echo '{{"test_accuracy": 0.5}}' > "$2/result.json"; fi
  shift
done
""")
    fake.chmod(0o755)
    for honest in ("0", "1"):
        calls = tmp_path / f"calls{honest}"
        env = dict(os.environ, PYTHON=str(fake), RUNS=str(tmp_path / f"runs{honest}"), CALLS=str(calls),
                   HONEST=honest, TINY="/data/tin")
        out = subprocess.run(["bash", os.path.join(REPO, "launch", script)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = calls.read_text().splitlines()
        configs = [line.split("--config ")[1].split()[0] for line in lines]
        assert all(os.path.isfile(os.path.join(REPO, c)) for c in configs)
        methods = ("pmf",) if script == "pmf.sh" else tuple(m for m in paper.METHODS if m != "pmf")
        cells = {f"configs/{m}_{d}_{n}.py" for (d, n) in paper.TABLE for m in methods}
        assert cells - {"configs/pmf_cifar100_resnet18.py"} <= set(configs)
        for line in lines:
            tiny = "tiny_imagenet" in line
            assert ("--config.dataset.name=tiny_imagenet:/data/tin" in line) == tiny
            flags = "--config.dataset.validation_is_test=False --config.dataset.validation=5000"
            assert (flags in line) == (tiny and honest == "1"), line
        assert "measured  50.00" in out.stdout


def test_cli_names_the_fix_when_select_on_test_meets_a_validation_split(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "jaxquant.main", "--config", "configs/md_tanh_s_digits.py",
                          "--workdir", str(tmp_path / "w"), "--config.dataset.validation=100",
                          "--config.dataset.validation_is_test=True", "--config.train.steps=2"],
                         cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "config.dataset.validation=0" in out.stderr and "validation_is_test" in out.stderr
