"""STE / BinaryConnect / BWN / DoReFa as Methods on a plain params pytree."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import jaxquant as jq
from jaxquant import methods
from jaxquant import quantizers as Q
from jaxquant.errors import ConfigError
from jaxquant.masks import MaskError, quant_mask
from jaxquant.methods import baselines as B
from jaxquant.methods.base import Context

PARAMS = {"dense": {"kernel": jnp.array([[0.5, -2.0], [0.0, 1.5]]), "bias": jnp.array([0.3, -0.7])}}
KERNEL_ONLY = lambda p: quant_mask(p, include=[".*kernel"])  # noqa: E731


def _grad(method, latent, weights):
    """d/dlatent of sum(weights * forward(latent))."""
    return jax.grad(lambda l: sum(jnp.sum(w * x) for w, x in zip(
        jax.tree.leaves(weights), jax.tree.leaves(method.forward(l, 0)))))(latent)


def test_ste_quantizes_masked_leaves_and_passes_others_through():
    m = B.ste(optax.sgd(0.1), "ternary", mask=KERNEL_ONLY, threshold=0.5)
    for out in (m.forward(m.init(PARAMS), 0), m.project(m.init(PARAMS))):
        np.testing.assert_array_equal(out["dense"]["kernel"], [[1, -1], [0, 1]])
        np.testing.assert_array_equal(out["dense"]["bias"], PARAMS["dense"]["bias"])


def test_ste_identity_gradient_and_gated_gradient():
    weights = jax.tree.map(lambda x: jnp.arange(1.0, x.size + 1).reshape(x.shape), PARAMS)
    g = _grad(B.ste(optax.sgd(0.1), "sign"), PARAMS, weights)
    np.testing.assert_array_equal(g["dense"]["kernel"], [[1, 2], [3, 4]])
    g = _grad(B.ste(optax.sgd(0.1), "sign", gated=True, mask=KERNEL_ONLY), PARAMS, weights)
    np.testing.assert_array_equal(g["dense"]["kernel"], [[1, 0], [3, 0]])  # |-2|, |1.5| > 1
    np.testing.assert_array_equal(g["dense"]["bias"], [1, 2])  # unquantized: true gradient


@pytest.mark.parametrize("name,kwargs,expected", [
    ("sign", {}, [[1, -1], [1, 1]]),
    ("twn", {}, [[0, -2], [0, 1.5]]),  # Delta = 0.7 * 1 = 0.7
    ("bwn", {}, [[1, -1], [1, 1]]),  # mean|w| = 1
    ("dorefa", {"bits": 1, "scale": True}, [[1, -1], [1, 1]]),
    ("pow2", {"levels": 5}, [[1, -2], [0, 2]]),  # alpha = mean|w| = 1; 1.5 ties up to 2
    ("pow2", {"levels": 3, "alpha": 0.5}, [[0.5, -0.5], [0, 0.5]]),
])
def test_ste_quantizer_choices(name, kwargs, expected):
    m = B.ste(optax.sgd(0.1), name, **kwargs)
    np.testing.assert_allclose(m.project(PARAMS)["dense"]["kernel"], expected)


def test_unknown_quantizer_names_the_config_key():
    with pytest.raises(ValueError, match=r"config.method.quantizer.*sign"):
        B.ste(optax.sgd(0.1), "binary")


def test_binary_connect_md_bnn_gates_gradient_and_does_not_clip():
    m = B.binary_connect(optax.sgd(1.0), variant="md_bnn")
    latent = m.init(PARAMS)
    g = _grad(m, latent, jax.tree.map(jnp.ones_like, PARAMS))
    np.testing.assert_array_equal(g["dense"]["kernel"], [[1, 0], [1, 0]])
    upd, _ = m.tx.update(jax.tree.map(lambda x: -x, g), m.tx.init(latent), latent)
    new = optax.apply_updates(latent, upd)
    np.testing.assert_allclose(new["dense"]["kernel"], [[1.5, -2.0], [1.0, 1.5]])  # 1.5 > 1 kept


def test_binary_connect_proxquant_identity_ste_and_clips_only_quantized_latents():
    m = B.binary_connect(optax.sgd(1.0), variant="proxquant", mask=KERNEL_ONLY)
    latent = m.init(PARAMS)
    g = _grad(m, latent, jax.tree.map(jnp.ones_like, PARAMS))
    np.testing.assert_array_equal(g["dense"]["kernel"], np.ones((2, 2)))
    step = {"dense": {"kernel": -jnp.ones((2, 2)), "bias": jnp.array([-1.0, 1.0])}}  # sgd(1): +1, -1
    upd, _ = m.tx.update(step, m.tx.init(latent), latent)
    new = optax.apply_updates(latent, upd)
    np.testing.assert_allclose(new["dense"]["kernel"], [[1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(new["dense"]["bias"], [1.3, -1.7])  # not quantized, not clipped


def test_binary_connect_forward_is_sign_in_both_variants():
    for variant in B.BC_VARIANTS:
        m = B.binary_connect(optax.sgd(1.0), variant=variant)
        np.testing.assert_array_equal(m.forward(PARAMS, 0)["dense"]["kernel"], [[1, -1], [1, 1]])


def test_binary_connect_rejects_unknown_variant():
    with pytest.raises(ValueError, match=r"config.method.variant.*md_bnn, proxquant"):
        B.binary_connect(optax.sgd(1.0), variant="lazy")


def test_clip_latents_keeps_parameters_in_the_box():
    tx = B.clip_latents()
    p = jnp.array([0.9, -0.5, 2.0])
    u, _ = tx.update(jnp.array([0.3, -0.2, 0.0]), tx.init(p), p)
    np.testing.assert_allclose(p + u, [1.0, -0.7, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(p, tx.init(p))


def test_bwn_equals_ste_over_the_bwn_quantizer():
    w = jax.random.normal(jax.random.PRNGKey(0), (7, 5))
    a, b = B.bwn(optax.sgd(0.1)), B.ste(optax.sgd(0.1), "bwn")
    np.testing.assert_array_equal(a.forward(w, 0), b.forward(w, 0))
    np.testing.assert_allclose(a.project(w), jnp.mean(jnp.abs(w)) * Q.sign(w))
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(a.forward(x, 0)))(w), np.ones((7, 5)))


def test_dorefa_one_bit_is_bwn_and_k_bit_is_unscaled():
    w = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    np.testing.assert_allclose(B.dorefa(optax.sgd(0.1), 1).project(w), Q.bwn(w), rtol=1e-6)
    np.testing.assert_array_equal(B.dorefa(optax.sgd(0.1), 1, one_bit_scale=False).project(w), Q.sign(w))
    m = B.dorefa(optax.sgd(0.1), 2)
    np.testing.assert_array_equal(m.project(w), Q.dorefa_weight(w, 2))
    np.testing.assert_array_equal(m.forward(w, 0), m.project(w))
    np.testing.assert_allclose(np.unique(np.asarray(m.project(w))), [-1, -1 / 3, 1 / 3, 1], rtol=1e-6)


def test_dorefa_gradient_flows_through_tanh_not_identity():
    # STE through round only: gradient differs from the identity STE of `ste(quantizer='dorefa')`.
    w = jnp.array([0.3, -0.8, 1.5, 0.0])
    g = jax.grad(lambda x: jnp.sum(B.dorefa(optax.sgd(0.1), 2, detach_max=True).forward(x, 0)))(w)
    np.testing.assert_allclose(g, (1 - np.tanh(w) ** 2) / np.tanh(1.5), rtol=1e-5)
    g_id = jax.grad(lambda x: jnp.sum(B.ste(optax.sgd(0.1), "dorefa", bits=2).forward(x, 0)))(w)
    np.testing.assert_array_equal(g_id, np.ones(4))


def test_dorefa_rejects_bits_outside_one_to_eight():
    with pytest.raises(ValueError, match=r"config.method.weight_bits must be an integer in 1\.\.8, got 9"):
        B.dorefa(optax.sgd(0.1), 9)


def _ctx(**method):
    cfg = ml_collections.ConfigDict({"method": method})
    return Context(config=cfg, optimizer=optax.sgd(0.1), learning_rate=lambda s: 0.1,
                   mask=KERNEL_ONLY, steps_per_epoch=10)


def test_from_config_builds_every_baseline_through_the_registry():
    w = PARAMS
    out = methods.build("ste", _ctx(name="ste", quantizer="ternary", threshold=1.0)).project(w)
    np.testing.assert_array_equal(out["dense"]["kernel"], [[0, -1], [0, 1]])
    np.testing.assert_array_equal(out["dense"]["bias"], w["dense"]["bias"])
    out = methods.build("binary_connect", _ctx(name="binary_connect", variant="proxquant")).project(w)
    np.testing.assert_array_equal(out["dense"]["kernel"], [[1, -1], [1, 1]])
    out = methods.build("bwn", _ctx(name="bwn")).project(w)
    np.testing.assert_allclose(out["dense"]["kernel"], [[1, -1], [1, 1]])
    out = methods.build("dorefa", _ctx(name="dorefa", weight_bits=2)).project(w)
    np.testing.assert_array_equal(out["dense"]["kernel"], Q.dorefa_weight(w["dense"]["kernel"], 2))
    with pytest.raises(ValueError, match="weight_bits"):
        methods.build("dorefa", _ctx(name="dorefa", weight_bits=0))


def test_public_constructors_are_reexported():
    assert jq.binary_connect is B.binary_connect and jq.dorefa is B.dorefa
    assert jq.ste is B.ste and jq.bwn is B.bwn and jq.clip_latents is B.clip_latents


def test_a_quant_rule_matching_no_parameter_is_a_clear_error():
    m = B.binary_connect(optax.sgd(0.1), mask=lambda p: quant_mask(p, include=["conv.*/kernel"]))
    with pytest.raises(MaskError, match=r"'conv\.\*/kernel' matches no parameter.*dense/kernel"):
        m.project(PARAMS)


def test_binary_connect_learns_a_binary_linear_classifier():
    # Labels from a sign-weight teacher; BC must recover the teacher's signs.
    key = jax.random.PRNGKey(3)
    x = jax.random.normal(key, (256, 8))
    teacher = jnp.array([1, -1, 1, 1, -1, -1, 1, -1], jnp.float32)
    y = (x @ teacher > 0).astype(jnp.float32)
    for variant in B.BC_VARIANTS:
        m = B.binary_connect(optax.adam(0.05), variant=variant)
        latent = m.init({"w": 0.01 * jax.random.normal(jax.random.PRNGKey(4), (8,))})
        state = m.tx.init(latent)

        @jax.jit
        def step(latent, state):
            loss = lambda l: optax.sigmoid_binary_cross_entropy(x @ m.forward(l, 0)["w"] / 3, y).mean()  # noqa: E731
            upd, state = m.tx.update(jax.grad(loss)(latent), state, latent)
            return optax.apply_updates(latent, upd), state

        for _ in range(100):
            latent, state = step(latent, state)
        np.testing.assert_array_equal(m.project(latent)["w"], teacher)


@pytest.mark.parametrize("name,method,levels", [
    ("bc_digits", "binary_connect", 2),
    ("bc_fashion_mnist", "binary_connect", 2),
    ("dorefa_cifar10_resnet20", "dorefa", 2),
    ("bwn_cifar10_resnet20", "bwn", 2),
])
def test_baseline_configs_build_their_method_and_quantize_every_kernel(name, method, levels):
    from conftest import load_config
    from jaxquant import models
    from jaxquant.config_check import validate

    config = load_config(name)
    validate(config)
    assert config.method.name == method
    shape = {"cifar10": (32, 32, 3), "fashion_mnist": (28, 28, 1), "digits": (8, 8, 1)}[config.dataset.name]
    model = models.build(config.model, 10)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes["params"])
    mask_fn = lambda p: quant_mask(p, list(config.quant.include), list(config.quant.exclude))  # noqa: E731
    ctx = Context(config=config, optimizer=optax.adam(1e-3), learning_rate=lambda s: 1e-3,
                  mask=mask_fn, steps_per_epoch=10)
    projected = jax.jit(methods.build(config.method.name, ctx).project)(params)
    for path, x in jax.tree_util.tree_flatten_with_path(projected)[0]:
        n_levels = len(np.unique(np.asarray(x)))
        if jax.tree_util.keystr(path).endswith("['kernel']"):
            assert n_levels == levels, path
        else:
            assert n_levels > levels, path


def test_dorefa_config_takes_bit_width_overrides():
    from conftest import load_config
    from jaxquant.config_check import validate
    from jaxquant.errors import ConfigError

    config = load_config("dorefa_cifar10_resnet20")
    for bits in (1, 2, 4):
        config.method.weight_bits = bits
        validate(config)
    config.method.weight_bits = 9
    with pytest.raises(ConfigError, match=r"config.method.weight_bits must be an integer in 1..8"):
        validate(config)


def test_building_a_method_refuses_a_key_it_does_not_read():
    import ml_collections
    import optax
    from jaxquant import methods
    from jaxquant.errors import ConfigError

    def build(**method):
        config = ml_collections.ConfigDict(dict(method=dict(name="binary_connect", **method)))
        ctx = methods.Context(config=config, optimizer=optax.sgd(0.1),
                              learning_rate=optax.constant_schedule(0.1), mask=None,
                              steps_per_epoch=1)
        return methods.build("binary_connect", ctx)

    assert build(variant="proxquant") is not None
    with pytest.raises(ConfigError, match=r"config\.method\.varient.*Did you mean 'variant'"):
        build(varient="proxquant")


# MetaQuant's STE cells: the backward rules of its released utils/quantize.py.
W_MQ = np.array([[0.5, -2.0], [0.0, 0.9]], np.float32)


def _kernel_grad(method):
    """d/dkernel of sum(v * forward(kernel)) with v = [[1, 2], [3, 4]]."""
    v = np.arange(1.0, 5.0).reshape(2, 2)
    p = {"dense": {"kernel": jnp.asarray(W_MQ), "bias": jnp.zeros(2)}}
    return np.asarray(_grad(method, p, {"dense": {"kernel": v, "bias": np.zeros(2)}})["dense"]["kernel"])


def test_bwn_method_backward_option_through_the_registry():
    v = np.arange(1.0, 5.0).reshape(2, 2)
    alpha = np.abs(W_MQ).mean()  # (0.5 + 2 + 0 + 0.9) / 4 = 0.85
    g = _kernel_grad(methods.build("bwn", _ctx(name="bwn", backward="alpha_gated")))
    np.testing.assert_allclose(g, [[1 * 0.85, 0], [3 * 0.85, 4 * 0.85]], rtol=1e-6)
    np.testing.assert_allclose(g, v * alpha * (np.abs(W_MQ) <= 1), rtol=1e-6)
    np.testing.assert_array_equal(_kernel_grad(methods.build("bwn", _ctx(name="bwn"))), v)
    with pytest.raises(ConfigError, match=r"config.method.backward 'gated'.*identity, alpha_gated"):
        methods.build("bwn", _ctx(name="bwn", backward="gated"))


def test_dorefa_method_one_bit_backward_option_through_the_registry():
    v = np.arange(1.0, 5.0).reshape(2, 2)
    t = np.tanh(W_MQ.astype(np.float64))
    ctx = _ctx(name="dorefa", weight_bits=1, one_bit_scale=False, detach_max=True,
               one_bit_backward="tanh")
    np.testing.assert_allclose(_kernel_grad(methods.build("dorefa", ctx)),
                               v * (1 - t ** 2) / np.tanh(2.0), rtol=1e-5)
    ctx = _ctx(name="dorefa", weight_bits=1, one_bit_scale=False, detach_max=True)
    np.testing.assert_array_equal(_kernel_grad(methods.build("dorefa", ctx)), v)  # default
    with pytest.raises(ConfigError, match=r"config.method.one_bit_backward 'sign'"):
        methods.build("dorefa", _ctx(name="dorefa", one_bit_backward="sign"))


def _launcher_configs():
    """(config name, overrides) of every MetaQuant Table-1 row in launch/metaquant.sh."""
    import re
    from conftest import REPO
    text = open(os.path.join(REPO, "launch", "metaquant.sh")).read()
    return text, sorted(set(re.findall(r"configs/(\w+)\.py", text)))


def test_metaquant_table_ste_cells_use_the_released_backward_rules():
    from conftest import load_config
    text, names = _launcher_configs()
    assert {"dorefa_cifar10_resnet20", "bwn_cifar10_resnet20"} <= set(names)
    assert "--config.method." not in text  # the launcher does not override the configs' rules
    dorefa_cfg, bwn_cfg = load_config("dorefa_cifar10_resnet20"), load_config("bwn_cifar10_resnet20")
    assert dict(dorefa_cfg.method) == dict(name="dorefa", weight_bits=1, one_bit_scale=False,
                                           detach_max=True, one_bit_backward="tanh")
    assert dict(bwn_cfg.method) == dict(name="bwn", backward="alpha_gated")
    ste_digits = load_config("ste_dorefa_sgd_digits")  # the CPU-size twin of the dorefa/SGD cell
    assert dict(ste_digits.method) == dict(dorefa_cfg.method)
    # and the built methods take those gradients (hand values as above)
    t = np.tanh(W_MQ.astype(np.float64))
    v = np.arange(1.0, 5.0).reshape(2, 2)
    for cfg, expected in ((dorefa_cfg, v * (1 - t ** 2) / np.tanh(2.0)),
                          (bwn_cfg, v * np.abs(W_MQ).mean() * (np.abs(W_MQ) <= 1))):
        ctx = Context(config=cfg, optimizer=optax.sgd(1e-3), learning_rate=lambda s: 1e-3,
                      mask=KERNEL_ONLY, steps_per_epoch=1)
        np.testing.assert_allclose(_kernel_grad(methods.build(cfg.method.name, ctx)), expected,
                                   rtol=1e-5)


def test_cli_refuses_an_unknown_backward_rule_with_the_key_and_the_choices(tmp_path):
    from test_faults import argv_for, run_main
    code, _, err = run_main(argv_for(tmp_path, "--config.method.one_bit_backward=sign",
                                     config="configs/ste_dorefa_sgd_digits.py"))
    assert code == 2 and "Traceback" not in err
    assert "config.method.one_bit_backward 'sign'" in err and "identity, tanh" in err
