"""BitNet b1.58 baseline: absmean ternary weights, per-token absmax activations, the method."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxquant import methods
from jaxquant import quantizers as Q
from jaxquant.errors import ConfigError
from jaxquant.masks import quant_mask
from jaxquant.methods import baselines as B
from jaxquant.methods.base import Context

W = np.array([[0.9, -0.2, 0.05], [-1.6, 0.3, 0.0]], np.float32)
# mean|W| = (0.9 + 0.2 + 0.05 + 1.6 + 0.3 + 0) / 6 = 0.5083...; W / 0.5083 =
# [1.77, -0.39, 0.098, -3.15, 0.59, 0] -> round, clip -> [1, 0, 0, -1, 1, 0].
GAMMA = 3.05 / 6


def test_absmean_ternary_matches_hand_computed_levels_and_scale():
    s = GAMMA + 1e-5
    np.testing.assert_allclose(Q.absmean_ternary(jnp.asarray(W)),
                               np.array([[1, 0, 0], [-1, 1, 0]]) * s, rtol=1e-6)


def test_absmean_ternary_rounds_half_to_even_and_eps_guards_zero():
    # mean|w| = 1: w / 1 = 0.5 -> 0 (half to even), 1.5 -> 2 -> clipped 1, -0.5 -> 0
    w = jnp.array([0.5, 1.5, -0.5, -1.5, 1.0, -1.0])
    np.testing.assert_allclose(Q.absmean_ternary(w, eps=0.0), [0, 1, 0, -1, 1, -1])
    np.testing.assert_array_equal(Q.absmean_ternary(jnp.zeros(4)), np.zeros(4))


def test_absmean_ternary_with_ste_has_identity_gradient():
    weights = jnp.arange(1.0, 7.0).reshape(2, 3)
    g = jax.grad(lambda w: jnp.sum(weights * Q.straight_through(Q.absmean_ternary)(w)))(jnp.asarray(W))
    np.testing.assert_array_equal(g, weights)  # the scale carries no gradient either


def _absmax_numpy(x, bits):
    qb = 2 ** (bits - 1) - 1
    m = np.maximum(np.abs(x).max(-1, keepdims=True), 1e-5)
    return np.clip(np.round(x * qb / m), -qb - 1, qb) * m / qb


def test_absmax_activation_is_per_token():
    # two tokens of very different ranges: each keeps its own 127 steps
    x = np.array([[[0.01, -0.004, 0.0031], [100.0, -37.0, 2.2]]], np.float32)
    got = np.asarray(Q.absmax_activation(jnp.asarray(x)))
    # by hand, token 0: step 0.01 / 127; -0.004 * 12700 = -50.8 -> -51; 0.0031 * 12700 = 39.37 -> 39
    np.testing.assert_allclose(got[0, 0], np.array([127, -51, 39]) * 0.01 / 127, rtol=1e-5)
    # token 1: step 100 / 127; -37 * 1.27 = -46.99 -> -47; 2.2 * 1.27 = 2.794 -> 3
    np.testing.assert_allclose(got[0, 1], np.array([127, -47, 3]) * 100 / 127, rtol=1e-5)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 5, 16)).astype(np.float32) * rng.uniform(0.1, 10, size=(3, 5, 1))
    for bits in (8, 4):
        np.testing.assert_allclose(Q.absmax_activation(jnp.asarray(y), bits), _absmax_numpy(y, bits),
                                   rtol=1e-5, atol=1e-6)


def test_absmax_activation_ste_gradient_and_bit_check():
    x = jnp.array([[0.3, -1.2, 0.7]])
    g = jax.grad(lambda v: jnp.sum(jnp.array([[1.0, 2.0, 3.0]]) * Q.absmax_activation(v, ste=True)))(x)
    np.testing.assert_array_equal(g, [[1, 2, 3]])
    with pytest.raises(ValueError, match="2..8 bits"):
        Q.absmax_activation(x, 1)


PARAMS = {"attn": {"kernel": jnp.asarray(W), "bias": jnp.array([0.3, -0.7, 0.2])}}


def _config(**method):
    c = ml_collections.ConfigDict()
    c.method = ml_collections.ConfigDict(dict(name="bitnet", **method))
    return c


def _ctx(**method):
    return Context(config=_config(**method), optimizer=optax.sgd(0.1), learning_rate=lambda s: 0.1,
                   mask=lambda p: quant_mask(p, include=[".*kernel"], strict=False), steps_per_epoch=1)


def test_bitnet_method_from_config_quantizes_kernels_only_with_ste():
    m = methods.build("bitnet", _ctx())
    latent = m.init(PARAMS)
    for out in (m.forward(latent, 0), m.project(latent)):
        np.testing.assert_allclose(out["attn"]["kernel"], np.array([[1, 0, 0], [-1, 1, 0]]) * (GAMMA + 1e-5),
                                   rtol=1e-6)
        np.testing.assert_array_equal(out["attn"]["bias"], PARAMS["attn"]["bias"])
    weights = jnp.arange(1.0, 7.0).reshape(2, 3)
    g = jax.grad(lambda l: jnp.sum(weights * m.forward(l, 0)["attn"]["kernel"]))(latent)
    np.testing.assert_array_equal(g["attn"]["kernel"], weights)
    # one SGD step moves the latent by -lr * grad
    updates, _ = m.tx.update(g, m.tx.init(latent), latent)
    np.testing.assert_allclose(optax.apply_updates(latent, updates)["attn"]["kernel"], W - 0.1 * weights,
                               rtol=1e-6)


def test_bitnet_binary_weights_are_bwn():
    m = methods.build("bitnet", _ctx(weights="binary"))
    np.testing.assert_allclose(m.project(PARAMS)["attn"]["kernel"],
                               np.array([[1, -1, 1], [-1, 1, 1]]) * GAMMA, rtol=1e-6)


def test_bitnet_rejects_unknown_weights_and_keys():
    with pytest.raises(ConfigError, match=r"config.method.weights.*ternary, binary"):
        methods.build("bitnet", _ctx(weights="quaternary"))
    with pytest.raises(ConfigError, match="bits"):
        methods.build("bitnet", _ctx(bits=2))


def test_ste_method_takes_the_absmean_quantizer():
    m = B.ste(optax.sgd(0.1), "absmean", eps=0.0)
    np.testing.assert_allclose(m.project({"k": jnp.array([0.5, 1.5, -3.0, 0.1])})["k"],
                               np.array([0, 1, -1, 0]) * 1.275)
