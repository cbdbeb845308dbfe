"""Models: output shapes, parameter counts worked out by hand, and the switches."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxquant import models
from jaxquant.errors import ConfigError


def _variables(cfg, shape, num_classes=10):
    model = models.build(ml_collections.ConfigDict(cfg), num_classes)
    return model, jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((2, *shape)), train=False))


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _conv(k, cin, cout):
    return k * k * cin * cout


def test_resnet20_option_a_has_269722_params():
    bn = lambda c: 2 * c  # noqa: E731  (affine scale + bias)
    n = 3
    total = _conv(3, 3, 16) + bn(16)                                   # stem
    total += n * 2 * (_conv(3, 16, 16) + bn(16))                       # stage 1
    total += _conv(3, 16, 32) + _conv(3, 32, 32) + 2 * bn(32)          # stage 2, block 0
    total += (n - 1) * 2 * (_conv(3, 32, 32) + bn(32))
    total += _conv(3, 32, 64) + _conv(3, 64, 64) + 2 * bn(64)          # stage 3, block 0
    total += (n - 1) * 2 * (_conv(3, 64, 64) + bn(64))
    total += 64 * 10 + 10                                              # head
    assert total == 269_722
    _, v = _variables(dict(name="resnet20"), (32, 32, 3))
    assert _count(v["params"]) == total


def test_resnet20_option_b_adds_two_projection_shortcuts():
    _, a = _variables(dict(name="resnet20", shortcut="A"), (32, 32, 3))
    _, b = _variables(dict(name="resnet20", shortcut="B"), (32, 32, 3))
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # 1x1 conv + BN at stages 2 and 3
    assert _count(b["params"]) - _count(a["params"]) == extra
    assert "shortcut" in b["params"]["stage2_block0"]


@pytest.mark.parametrize("depth", [32, 44, 56, 110])
def test_cifar_resnet_depths_grow_by_whole_blocks(depth):
    _, v20 = _variables(dict(name="resnet20"), (32, 32, 3))
    _, v = _variables(dict(name=f"resnet{depth}"), (32, 32, 3))
    per_extra_block_set = 2 * (_conv(3, 16, 16) + 32) + 2 * (_conv(3, 32, 32) + 64) + 2 * (
        _conv(3, 64, 64) + 128)
    assert _count(v["params"]) - _count(v20["params"]) == (depth - 20) // 6 * per_extra_block_set


def test_cifar_resnet18_has_11_17m_params():
    _, v = _variables(dict(name="resnet18"), (32, 32, 3))
    assert _count(v["params"]) == 11_173_962  # the CIFAR ResNet-18 of md-bnn / pmf (kuangliu layout)


def test_vgg16_count_by_hand_and_non_affine_bn_has_no_bn_params():
    cfg = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs, cin = 0, 3
    for c in cfg:
        convs += _conv(3, cin, c) + 2 * c  # no conv bias (BN follows); affine BN
        cin = c
    fcs = (512 * 512 + 2 * 512) * 2 + 512 * 10 + 10
    _, v = _variables(dict(name="vgg16"), (32, 32, 3))
    assert _count(v["params"]) == convs + fcs
    _, v = _variables(dict(name="vgg16", affine_bn=False), (32, 32, 3))
    assert _count(v["params"]) == convs + fcs - 2 * (sum(cfg) + 1024)
    assert not any(k.startswith("bn") for k in v["params"])


@pytest.mark.parametrize("cfg,shape,classes", [
    (dict(name="mlp"), (8, 8, 1), 10),
    (dict(name="lenet5"), (28, 28, 1), 10),
    (dict(name="lenet5"), (8, 8, 1), 10),
    (dict(name="resnet20"), (32, 32, 3), 100),
    (dict(name="resnet18", stem="cifar", stem_stride=2), (64, 64, 3), 200),
    (dict(name="resnet18", stem="imagenet"), (64, 64, 3), 1000),
    (dict(name="vgg16"), (32, 32, 3), 10),
])
def test_logits_have_shape_batch_by_classes(cfg, shape, classes):
    model = models.build(ml_collections.ConfigDict(cfg), classes)

    def logits():
        v = model.init(jax.random.PRNGKey(0), jnp.zeros((2, *shape)), train=False)
        return model.apply(v, jnp.zeros((2, *shape)), train=False)
    out = jax.eval_shape(logits)
    assert out.shape == (2, classes)


def test_bias_switches():
    from jaxquant.masks import param_paths
    _, v = _variables(dict(name="mlp", use_bias=False, head_bias=False), (8, 8, 1))
    assert [p for p in param_paths(v["params"]) if p.endswith("bias") and "bn" not in p] == []
    _, v = _variables(dict(name="mlp"), (8, 8, 1))
    assert {"stem/bias", "head/bias"} <= set(param_paths(v["params"]))
    _, v = _variables(dict(name="resnet20"), (32, 32, 3))
    assert "bias" not in v["params"]["stem"]  # followed by BN: no bias by default
    _, v = _variables(dict(name="resnet20", use_bias=True), (32, 32, 3))
    assert "bias" in v["params"]["stem"]


def test_activation_quantization_feeds_quantized_levels_to_inner_layers():
    model = models.build(ml_collections.ConfigDict(dict(name="mlp", features=(16, 16), act_bits=2)), 3)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1))
    v = model.init(jax.random.PRNGKey(1), x, train=False)
    _, state = model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    # the input of dense1 (the second layer) holds 2-bit levels {0, 1/3, 2/3, 1}
    inner = state["intermediates"]["dense1"]["__call__"][0]
    kernel, bias = v["params"]["dense1"]["kernel"], v["params"]["dense1"]["bias"]
    inputs = np.linalg.lstsq(np.asarray(kernel).T, (np.asarray(inner) - np.asarray(bias)).T, rcond=None)[0].T
    np.testing.assert_allclose(inputs * 3, np.round(inputs * 3), atol=1e-3)
    assert inputs.min() >= -1e-4 and inputs.max() <= 1 + 1e-4


@pytest.mark.parametrize("cfg", [dict(name="resnet20", shortcut="C"), dict(name="resnet18", stem="x"),
                                 dict(name="mlp", act_bits=9), dict(name="mlp", init="he"),
                                 dict(name="nope")])
def test_bad_model_config_is_a_config_error(cfg):
    with pytest.raises(ConfigError):
        models.build(ml_collections.ConfigDict(cfg), 10)


@pytest.mark.parametrize("features", [("digits",), (0,), (), (64, -1), "64"])
def test_bad_mlp_widths_are_a_config_error(features):
    with pytest.raises(ConfigError, match="config.model.features"):
        models.build(ml_collections.ConfigDict(dict(name="mlp", features=features)), 10)
