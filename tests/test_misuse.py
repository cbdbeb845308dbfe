"""Library misuse from a notebook: every method factory refuses a bad mask, integer
params, a NaN or negative beta and absurd level counts with an error that names the
argument and what is allowed (jaxquant.methods.checks)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxquant.methods import baselines as B, checks, metaquant, mirror as M, pdqat, proxquant
from jaxquant.methods.base import as_mask_fn, identity_method, split_by_mask

PARAMS = {"dense": {"kernel": jnp.array([[0.5, -0.25], [0.75, -0.9]]), "bias": jnp.array([0.1, -0.2])}}
SGD = optax.sgd(0.1)

# name -> factory(mask) for every method family; beta 1.0 where one is needed
FACTORIES = {
    "md_tanh": lambda mask: M.md_tanh(SGD, 1.0, mask=mask),
    "md_tanh_s": lambda mask: M.md_tanh_s(SGD, 1.0, mask=mask),
    "gd_tanh": lambda mask: M.gd_tanh(SGD, 1.0, mask=mask),
    "md_softmax": lambda mask: M.md_softmax(SGD, 1.0, mask=mask),
    "md_softmax_s": lambda mask: M.md_softmax_s(SGD, 1.0, mask=mask),
    "pmf": lambda mask: M.pmf(SGD, 1.0, mask=mask),
    "ste": lambda mask: B.ste(SGD, "sign", mask=mask),
    "binary_connect": lambda mask: B.binary_connect(SGD, mask=mask),
    "bwn": lambda mask: B.bwn(SGD, mask=mask),
    "dorefa": lambda mask: B.dorefa(SGD, 2, mask=mask),
    "proxquant": lambda mask: proxquant.proxquant(SGD, 0.1, 10, mask=mask),
    "metaquant": lambda mask: metaquant.metaquant(SGD, 0.1, mask=mask, hidden=4),
    "pdqat": lambda mask: pdqat.pdqat(SGD, 2, mask=mask or (lambda p: jax.tree.map(lambda _: True, p)),
                                      eps_out=0.1),
}


def use(method, params=PARAMS):
    """init, forward and project once (where a mask is first applied to the params)."""
    latent = method.init(params)
    method.forward(latent, 0)
    return method.project(latent)


# ------------------------------------------------------------------ masks

@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_mask_of_another_structure_is_a_value_error_naming_mask_and_the_missing_leaf(name):
    mask = {"dense": {"kernel": True}}  # no entry for dense/bias
    with pytest.raises(ValueError, match=r"mask does not have the structure.*dense/bias"):
        use(FACTORIES[name](mask))


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("leaf, words", [
    (np.array([True, False]), "array of shape (2,)"),
    ("no", "str 'no'"),
    (1, "int 1"),
])
def test_a_mask_leaf_that_is_not_a_bool_is_a_type_error_naming_the_leaf(name, leaf, words):
    mask = {"dense": {"kernel": True, "bias": leaf}}
    with pytest.raises(TypeError, match=r"mask leaf 'dense/bias' is ") as e:
        use(FACTORIES[name](mask))
    assert words in str(e.value) and "Python bool" in str(e.value)


def test_a_mask_function_returning_strings_is_refused_when_applied():
    method = M.md_tanh_s(SGD, 1.0, mask=lambda p: jax.tree.map(lambda _: "no", p))
    with pytest.raises(TypeError, match="mask leaf 'dense/bias' is str 'no'"):
        method.init(PARAMS)


def test_a_bool_mask_selects_exactly_its_leaves():
    """The checks let a correct mask through unchanged: sign on the kernel, bias kept."""
    mask = {"dense": {"kernel": True, "bias": np.bool_(False)}}
    out = use(B.binary_connect(SGD, mask=mask))
    np.testing.assert_array_equal(out["dense"]["kernel"], [[1.0, -1.0], [1.0, -1.0]])
    np.testing.assert_array_equal(out["dense"]["bias"], PARAMS["dense"]["bias"])


def test_a_mask_inside_optax_partition_sees_masked_out_leaves_and_still_works():
    """optax.partition hands its inner transforms trees with MaskedNode leaves; the
    structure check must accept them. MD-tanh step on the kernel (x <- tanh(atanh(x) + u),
    beta = 1, u = -0.1 g), plain SGD on the bias."""
    mask = {"dense": {"kernel": True, "bias": False}}
    inner = optax.chain(optax.sgd(0.1), optax.masked(M.mirror_step("tanh", 1.0), as_mask_fn(mask)))
    tx = split_by_mask(as_mask_fn(mask), inner, optax.sgd(0.1))
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    x = np.asarray(PARAMS["dense"]["kernel"], np.float64)
    np.testing.assert_allclose(updates["dense"]["kernel"], np.tanh(np.arctanh(x) - 0.1) - x, rtol=1e-5)
    np.testing.assert_allclose(updates["dense"]["bias"], [-0.1, -0.1], rtol=1e-6)


# ------------------------------------------------------------------ params dtype

@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_integer_params_are_a_type_error_naming_the_leaf(name):
    params = {"dense": {"kernel": jnp.array([[1, -1], [1, 1]], jnp.int32), "bias": jnp.zeros(2)}}
    with pytest.raises(TypeError, match=r"params leaf 'dense/kernel' has dtype int32.*floating-point"):
        FACTORIES[name](None).init(params)


def test_the_full_precision_method_checks_params_too():
    with pytest.raises(TypeError, match="params leaf 'w' has dtype int32"):
        identity_method(SGD).init({"w": jnp.array([1, 2], jnp.int32)})


# ------------------------------------------------------------------ beta and levels

@pytest.mark.parametrize("beta, error", [
    (float("nan"), ValueError), (-1.0, ValueError), (0.0, ValueError), (float("inf"), ValueError),
    ("1.0", TypeError), (True, TypeError), (jnp.ones(3), TypeError),
])
def test_mirror_step_refuses_a_beta_that_is_not_a_positive_finite_number(beta, error):
    with pytest.raises(error, match="mirror_step: beta must be"):
        M.mirror_step("tanh", beta)


@pytest.mark.parametrize("factory", [M.md_tanh, M.md_tanh_s, M.gd_tanh, M.md_softmax,
                                     M.md_softmax_s, M.pmf])
def test_every_mirror_method_refuses_a_nan_or_negative_beta(factory):
    for beta in (float("nan"), -2.0):
        with pytest.raises(ValueError, match="beta must be a finite number > 0"):
            factory(SGD, beta)


def test_a_positive_beta_and_a_schedule_are_accepted():
    M.mirror_step("tanh", 1e35)
    M.mirror_step("softmax", jnp.float32(2.0))
    M.md_tanh_s(SGD, M.beta_schedule(1.02, 200, 1e35))


@pytest.mark.parametrize("factory", [M.pmf, M.md_softmax_s, M.md_softmax])
def test_simplex_methods_take_2_to_16_levels(factory):
    for levels in (100, 17, 1):
        with pytest.raises(ValueError, match=r"levels must be an integer in 2\.\.16.*got "):
            factory(SGD, 1.0, levels=levels)
    latent = factory(SGD, 1.0, levels=16).init({"w": jnp.zeros(3)})
    assert latent["w"].shape == (16, 3)  # one logit per level and weight


def test_sixteen_levels_are_the_symmetric_integers_without_zero():
    assert checks.MAX_SIMPLEX_LEVELS == 16
    np.testing.assert_array_equal(M.level_values(16), [-8, -7, -6, -5, -4, -3, -2, -1,
                                                       1, 2, 3, 4, 5, 6, 7, 8])


def test_export_refuses_the_same_bad_masks():
    from jaxquant import export
    with pytest.raises(TypeError, match="mask leaf 'dense/bias' is str 'no'"):
        export.summary_table(PARAMS, {"dense": {"kernel": True, "bias": "no"}})
    with pytest.raises(ValueError, match="mask does not have the structure.*dense/bias"):
        export.summary_table(PARAMS, {"dense": {"kernel": True}})
