"""Hand-worked values for every quantizer, and the STE gradient rules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxquant import quantizers as q


def test_sign_maps_zero_and_negative_zero_to_plus_one():
    x = jnp.array([-2.0, -0.0, 0.0, 0.3])
    np.testing.assert_array_equal(q.sign(x), [-1.0, 1.0, 1.0, 1.0])


def test_ternary_threshold_is_inclusive_on_both_sides():
    x = jnp.array([-0.6, -0.5, -0.4, 0.0, 0.4, 0.5, 0.7])
    np.testing.assert_array_equal(q.ternary(x, 0.5), [-1, -1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(q.ternary(x, 0.45), [-1, -1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(q.ternary(x, 0.65), [0, 0, 0, 0, 0, 0, 1])


def test_twn_uses_asymmetric_means_of_the_entries_beyond_delta():
    # mean|x| = 7.3 / 6, Delta = 0.7 * 7.3 / 6 = 0.8517; positives {2, 1} -> 1.5,
    # negatives {-3, -1} -> -2, the rest -> 0.
    x = jnp.array([2.0, 1.0, -0.1, -3.0, 0.2, -1.0])
    np.testing.assert_allclose(q.twn(x), [1.5, 1.5, 0.0, -2.0, 0.0, -2.0], rtol=1e-6)


def test_twn_ratio_moves_the_threshold():
    x = jnp.array([2.0, 1.0, -0.1, -3.0, 0.2, -1.0])
    # ratio 0.1: Delta = 0.1217, so 0.2 joins the positives: (2 + 1 + 0.2) / 3.
    np.testing.assert_allclose(q.twn(x, ratio=0.1), [3.2 / 3, 3.2 / 3, 0, -2, 3.2 / 3, -2], rtol=1e-6)


def test_twn_of_zeros_is_zeros_not_nan():
    np.testing.assert_array_equal(q.twn(jnp.zeros(5)), np.zeros(5))


def test_uniform_two_bits_rounds_to_thirds_half_to_even():
    x = jnp.array([0.0, 0.1, 0.2, 0.5, 0.9, 1.0])
    # 3x = 0, .3, .6, 1.5, 2.7, 3 -> 0, 0, 1, 2 (tie to even), 3, 3.
    np.testing.assert_allclose(q.uniform(x, 2), [0, 0, 1 / 3, 2 / 3, 1, 1], rtol=1e-6)


def test_uniform_one_and_eight_bits():
    x = jnp.array([0.2, 0.5, 0.7])
    np.testing.assert_array_equal(q.uniform(x, 1), [0.0, 0.0, 1.0])  # round(0.5) = 0 (even)
    np.testing.assert_allclose(q.uniform(jnp.array([0.5]), 8), [128 / 255], rtol=1e-6)


W = jnp.array([0.5, -1.0, 2.0, 0.0])


def test_dorefa_weight_two_bits_by_hand():
    # tanh w / (2 max|tanh w|) + 1/2 = 0.7397, 0.1050, 1, 0.5; x3 rounds to 2, 0, 3, 2 (tie to even);
    # 2 q - 1 = 1/3, -1, 1, 1/3.
    np.testing.assert_allclose(q.dorefa_weight(W, 2), [1 / 3, -1, 1, 1 / 3], rtol=1e-6)


def test_dorefa_weight_scale_multiplies_by_mean_abs():
    e = 3.5 / 4
    np.testing.assert_allclose(q.dorefa_weight(W, 2, scale=True), [e / 3, -e, e, e / 3], rtol=1e-6)


def test_dorefa_weight_one_bit_is_sign_and_scaled_sign():
    np.testing.assert_array_equal(q.dorefa_weight(W, 1), [1, -1, 1, 1])
    np.testing.assert_allclose(q.dorefa_weight(W, 1, scale=True), 0.875 * np.array([1, -1, 1, 1]))


def test_dorefa_weight_levels_at_k_bits():
    w = jax.random.normal(jax.random.PRNGKey(0), (4000,))
    for bits in (2, 3, 4):
        levels = np.unique(np.asarray(q.dorefa_weight(w, bits)))
        n = 2 ** bits - 1
        assert len(levels) <= n + 1
        np.testing.assert_allclose(levels * n, np.round(levels * n), atol=1e-5)
        assert levels.min() == -1.0 and levels.max() == 1.0


def test_dorefa_weight_of_zeros_is_finite():
    assert np.isfinite(np.asarray(q.dorefa_weight(jnp.zeros(3), 3))).all()


def test_dorefa_activation_clips_then_quantizes():
    x = jnp.array([-0.5, 0.2, 0.5, 0.8, 1.7])
    np.testing.assert_allclose(q.dorefa_activation(x, 2), [0, 1 / 3, 2 / 3, 2 / 3, 1], rtol=1e-6)


def test_bwn_is_mean_abs_times_sign():
    np.testing.assert_allclose(q.bwn(jnp.array([1.0, -3.0, 0.0, 2.0])), [1.5, -1.5, 1.5, 1.5])


@pytest.mark.parametrize("levels,expected", [
    (3, [-1, 0, 1]),
    (5, [-2, -1, 0, 1, 2]),
    (7, [-4, -2, -1, 0, 1, 2, 4]),
    (9, [-8, -4, -2, -1, 0, 1, 2, 4, 8]),
    (11, [-16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16]),
])
def test_pow2_codebook_levels(levels, expected):
    np.testing.assert_allclose(q.pow2_codebook(levels, 0.5), 0.5 * np.array(expected))


@pytest.mark.parametrize("levels", [2, 4, 13])
def test_pow2_codebook_rejects_other_level_counts(levels):
    with pytest.raises(ValueError, match="3, 5, 7, 9, 11"):
        q.pow2_codebook(levels)


def test_nearest_ternary_codebook_ties_go_to_the_upper_level():
    cb = jnp.array([-1.0, 0.0, 1.0])
    x = jnp.array([-0.7, -0.5, -0.2, 0.5, 0.51, 3.0])
    np.testing.assert_array_equal(q.nearest(x, cb), [-1, 0, 0, 1, 1, 1])


def test_nearest_on_pow2_codebook():
    cb = q.pow2_codebook(7, 0.5)  # -2, -1, -.5, 0, .5, 1, 2
    x = jnp.array([1.5, 1.4, -3.0, 0.26, -0.74, 0.24])
    np.testing.assert_allclose(q.nearest(x, cb), [2.0, 1.0, -2.0, 0.5, -0.5, 0.0])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10, width=32), min_size=16, max_size=16),
       st.lists(st.floats(-5, 5, width=32), min_size=1, max_size=6, unique=True))
def test_nearest_returns_a_closest_codebook_level(xs, levels):
    cb = np.sort(np.array(levels, np.float32))
    x = np.array(xs, np.float32)
    out = np.asarray(q.nearest(jnp.asarray(x), jnp.asarray(cb)))
    assert np.isin(out, cb).all()
    best = np.min(np.abs(x[:, None] - cb[None, :]), axis=1)
    np.testing.assert_allclose(np.abs(x - out), best, rtol=1e-6, atol=1e-6)


def test_straight_through_forward_is_exactly_the_quantizer():
    x = jax.random.uniform(jax.random.PRNGKey(1), (1000,))
    for fn in (lambda v: q.uniform(v, 3), q.sign, q.bwn, lambda v: q.dorefa_weight(v, 2)):
        np.testing.assert_array_equal(q.straight_through(fn)(x), fn(x))
        np.testing.assert_array_equal(q.gated_straight_through(fn)(x), fn(x))


def test_straight_through_gradient_is_identity():
    x = jnp.array([-2.0, -1.0, 0.0, 0.5, 3.0])
    g = jax.grad(lambda v: jnp.sum(jnp.arange(5.0) * q.straight_through(q.sign)(v)))(x)
    np.testing.assert_array_equal(g, np.arange(5.0))


def test_gated_straight_through_zeroes_gradient_where_abs_exceeds_one():
    x = jnp.array([-2.0, -1.0, 0.0, 0.5, 1.0, 1.0001, 3.0])
    g = jax.grad(lambda v: jnp.sum(q.gated_straight_through(q.sign)(v)))(x)
    np.testing.assert_array_equal(g, [0, 1, 1, 1, 1, 0, 0])


def test_straight_through_may_close_over_a_differentiated_value():
    # d/da sum(ste(x -> a*x)(1)) = 0: the forward of an STE is a constant in a.
    g = jax.grad(lambda a: jnp.sum(q.straight_through(lambda v: a * v)(jnp.ones(2))))(2.0)
    assert g == 0.0


def test_dorefa_weight_ste_gradient_is_the_metaquant_calibration():
    # With max detached: d/dw [2 q(tanh w / (2m) + 1/2) - 1] = (1 - tanh^2 w) / m.
    w = jnp.array([0.3, -0.8, 1.5, 0.0])
    g = jax.grad(lambda v: jnp.sum(q.dorefa_weight(v, 2, ste=True, detach_max=True)))(w)
    np.testing.assert_allclose(g, (1 - np.tanh(w) ** 2) / np.max(np.abs(np.tanh(w))), rtol=1e-5)


def test_dorefa_weight_ste_one_bit_is_scaled_identity():
    w = jnp.array([0.3, -0.8, 1.5, 0.0])
    g = jax.grad(lambda v: jnp.sum(q.dorefa_weight(v, 1, scale=True, ste=True)))(w)
    np.testing.assert_allclose(g, np.full(4, np.mean(np.abs(w))), rtol=1e-6)


def test_dorefa_ste_forward_equals_hard_forward():
    w = jax.random.normal(jax.random.PRNGKey(2), (500,))
    for bits in (1, 2, 4, 8):
        np.testing.assert_array_equal(q.dorefa_weight(w, bits, ste=True), q.dorefa_weight(w, bits))


def test_dorefa_activation_ste_gradient_is_one_inside_zero_one():
    x = jnp.array([-0.5, 0.2, 0.7, 1.5])
    g = jax.grad(lambda v: jnp.sum(q.dorefa_activation(v, 2, ste=True)))(x)
    np.testing.assert_array_equal(g, [0, 1, 1, 0])


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5, True, "3", None])
def test_check_bits_rejects_values_outside_one_to_eight(bad):
    with pytest.raises(ValueError, match=r"bits must be an integer in 1\.\.8"):
        q.check_bits(bad)


def test_quantizers_reject_bad_bits_with_a_clear_error():
    with pytest.raises(ValueError, match=r"1\.\.8, got 9"):
        q.uniform(jnp.ones(2), 9)
    with pytest.raises(ValueError, match=r"1\.\.8, got 0"):
        q.dorefa_weight(jnp.ones(2), 0)
    assert q.check_bits(np.int64(4)) == 4


# MetaQuant's released STE rules (utils/quantize.py), checked against numpy on the formula.
W6 = np.array([[0.5, -2.0, 0.0], [1.5, -0.25, 0.9]], np.float32)
V6 = np.array([[1.0, 2.0, -3.0], [0.5, -1.0, 4.0]], np.float32)  # upstream gradient g_Ŵ


def _vjp(fn, w=W6, v=V6):
    """(fn(w), d/dw sum(v * fn(w)))."""
    out, pull = jax.vjp(fn, jnp.asarray(w))
    return np.asarray(out), np.asarray(pull(jnp.asarray(v))[0])


def test_with_gradient_of_forward_is_q_and_backward_the_surrogate():
    out, g = _vjp(q.with_gradient_of(q.sign, lambda x: x ** 3))
    np.testing.assert_array_equal(out, np.where(W6 >= 0, 1.0, -1.0))
    np.testing.assert_allclose(g, V6 * 3 * W6 ** 2, rtol=1e-6)


def test_bwn_ste_alpha_gated_backward_is_alpha_times_the_hard_tanh_gate():
    alpha = np.abs(W6).mean()                                  # 5.15 / 6, detached
    out, g = _vjp(lambda w: q.bwn_ste(w, "alpha_gated"))
    np.testing.assert_allclose(out, alpha * np.where(W6 >= 0, 1.0, -1.0), rtol=1e-6)
    np.testing.assert_allclose(g, V6 * alpha * (np.abs(W6) <= 1), rtol=1e-6)
    assert g[0, 1] == 0 and g[1, 0] == 0                       # |-2|, |1.5| > 1
    np.testing.assert_allclose(g[0, 0], 1.0 * 5.15 / 6, rtol=1e-6)


def test_bwn_ste_default_backward_is_still_the_identity():
    out, g = _vjp(q.bwn_ste)
    np.testing.assert_allclose(out, np.abs(W6).mean() * np.where(W6 >= 0, 1.0, -1.0), rtol=1e-6)
    np.testing.assert_array_equal(g, V6)
    with pytest.raises(ValueError, match="alpha_gated"):
        q.bwn_ste(jnp.ones(2), "gated")


def test_dorefa_one_bit_tanh_backward_with_detached_max():
    t = np.tanh(W6.astype(np.float64))
    m = np.abs(t).max()                                        # tanh 2
    out, g = _vjp(lambda w: q.dorefa_weight(w, 1, ste=True, detach_max=True, one_bit_backward="tanh"))
    np.testing.assert_array_equal(out, np.where(W6 >= 0, 1.0, -1.0))
    np.testing.assert_allclose(g, V6 * (1 - t ** 2) / m, rtol=1e-5)
    # and times E = mean|w| with one_bit_scale
    out, g = _vjp(lambda w: q.dorefa_weight(w, 1, scale=True, ste=True, detach_max=True,
                                            one_bit_backward="tanh"))
    np.testing.assert_allclose(g, V6 * np.abs(W6).mean() * (1 - t ** 2) / m, rtol=1e-5)


def test_dorefa_one_bit_tanh_backward_through_the_max_when_not_detached():
    # d/dw_j sum_i v_i tanh(w_i) / m, m = |tanh w_k| (k = argmax): the detached term plus,
    # at k only, -sum_i v_i tanh(w_i) / m^2 * sign(w_k) (1 - tanh^2 w_k).
    t = np.tanh(W6.astype(np.float64))
    k = np.unravel_index(np.argmax(np.abs(t)), t.shape)
    m = np.abs(t[k])
    expected = V6 * (1 - t ** 2) / m
    expected[k] -= np.sum(V6 * t) / m ** 2 * np.sign(W6[k]) * (1 - t[k] ** 2)
    _, g = _vjp(lambda w: q.dorefa_weight(w, 1, ste=True, one_bit_backward="tanh"))
    np.testing.assert_allclose(g, expected, rtol=1e-5)


def test_dorefa_one_bit_default_backward_is_still_straight_through_sign():
    _, g = _vjp(lambda w: q.dorefa_weight(w, 1, ste=True, detach_max=True))
    np.testing.assert_array_equal(g, V6)
    # k > 1 bits ignore one_bit_backward: the tanh rule either way
    a = _vjp(lambda w: q.dorefa_weight(w, 2, ste=True, detach_max=True))
    b = _vjp(lambda w: q.dorefa_weight(w, 2, ste=True, detach_max=True, one_bit_backward="tanh"))
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="one_bit_backward must be one of identity, tanh"):
        q.dorefa_weight(jnp.ones(2), 1, ste=True, one_bit_backward="sign")
