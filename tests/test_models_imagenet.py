"""torchvision-architecture ImageNet models: ResNet-18/34/50 and MobileNetV2."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxquant import models
from jaxquant.errors import ConfigError
from jaxquant.models.layers import Switches
from jaxquant.models.mobilenet import make_divisible, relu6
from jaxquant.models.resnet_imagenet import ImageNetResNet


def _shapes(cfg, num_classes=1000, size=64):
    module = models.build(cfg, num_classes)
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)),
                                              train=False))


# torchvision's published parameter counts (sum of p.numel() over model.parameters()).
@pytest.mark.parametrize("cfg,count", [
    (dict(name="resnet18", stem="imagenet"), 11_689_512),
    (dict(name="resnet34"), 21_797_672),
    (dict(name="resnet50"), 25_557_032),
    (dict(name="mobilenet_v2"), 3_504_872),
])
def test_parameter_counts_match_torchvision(cfg, count):
    n = sum(x.size for x in jax.tree.leaves(_shapes(cfg)["params"]))
    assert n == count


def test_resnet18_imagenet_stem_is_the_depth_18_imagenet_resnet():
    a = _shapes(dict(name="resnet18", stem="imagenet"), 10)
    module = ImageNetResNet(10, depth=18)
    b = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)), train=False))
    assert jax.tree.map(lambda s: s.shape, a) == jax.tree.map(lambda s: s.shape, b)


def test_bottleneck_blocks_have_torchvision_shapes():
    p = _shapes(dict(name="resnet50"))["params"]
    block = p["stage2_block0"]
    assert block["conv1"]["kernel"].shape == (1, 1, 256, 128)
    assert block["conv2"]["kernel"].shape == (3, 3, 128, 128)
    assert block["conv3"]["kernel"].shape == (1, 1, 128, 512)
    assert block["shortcut"]["kernel"].shape == (1, 1, 256, 512)
    assert "shortcut" in p["stage1_block0"]          # 64 -> 256 channels at stride 1
    assert "shortcut" not in p["stage1_block1"]
    assert sorted(k for k in p if k.startswith("stage")) == sorted(
        f"stage{s}_block{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n))
    assert p["head"]["kernel"].shape == (2048, 1000)


def test_mobilenet_v2_blocks_have_torchvision_shapes():
    p = _shapes(dict(name="mobilenet_v2"))["params"]
    assert p["stem"]["kernel"].shape == (3, 3, 3, 32)
    assert set(p["stage1_block0"]) == {"depthwise", "bn_depthwise", "project", "bn_project"}
    assert p["stage1_block0"]["depthwise"]["kernel"].shape == (3, 3, 1, 32)
    assert p["stage2_block0"]["expand"]["kernel"].shape == (1, 1, 16, 96)
    assert p["stage2_block0"]["depthwise"]["kernel"].shape == (3, 3, 1, 96)
    assert p["stage7_block0"]["project"]["kernel"].shape == (1, 1, 960, 320)
    assert p["conv_last"]["kernel"].shape == (1, 1, 320, 1280)
    assert sum(k.startswith("stage") for k in p) == 17


@pytest.mark.parametrize("cfg", [dict(name="resnet50"), dict(name="mobilenet_v2")])
def test_names_follow_the_documented_convention(cfg):
    v = _shapes(cfg)
    top = re.compile(r"stem|bn_stem|head|stage\d+_block\d+|conv_last|bn_last")
    for path in traverse_util.flatten_dict(v["params"]):
        assert top.fullmatch(path[0]), path
    for path in traverse_util.flatten_dict(v["batch_stats"]):  # every BatchNorm starts with bn
        assert path[-2].startswith("bn"), path


def test_bn_defaults_are_pytorch_momentum_0_1_and_eps_1e_5():
    module = models.build(dict(name="resnet34"), 10)
    assert module.sw.bn_momentum == 0.9 and module.sw.bn_eps == 1e-5


def test_make_divisible_rounds_like_torchvision():
    assert [make_divisible(v) for v in (32, 16 * 0.5, 24 * 0.75, 1280, 12, 3)] == [32, 8, 24, 1280, 16, 8]


def test_relu6_and_its_quantized_form():
    x = jnp.array([-1.0, 0.5, 3.0, 7.0])
    np.testing.assert_allclose(relu6(Switches(), x), [0.0, 0.5, 3.0, 6.0])
    np.testing.assert_allclose(relu6(Switches(act_bits=2), x), [0.0, 0.5, 1.0, 1.0])


def test_mobilenet_act_bits_quantizes_every_conv_input_but_the_stem():
    module = models.build(dict(name="mobilenet_v2", act_bits=2, width=0.25), 4)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                                train=False))
    rng = np.random.RandomState(0)
    variables = jax.tree.map(lambda s: rng.randn(*s.shape).astype(np.float32), shapes)
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])

    @jax.jit
    def conv_inputs(variables, x):
        seen = {}

        def record(next_fun, args, kwargs, context):
            if isinstance(context.module, (nn.Conv, nn.Dense)) and context.method_name == "__call__":
                seen["/".join(context.module.scope.path)] = args[0]
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            module.apply(variables, x, train=False)
        return seen

    seen = conv_inputs(variables, jnp.asarray(rng.randn(2, 32, 32, 3).astype(np.float32)))
    assert len(seen) == 1 + 17 * 2 + 16 + 1 + 1  # stem, dw+project, 16 expands, conv_last, head
    levels = np.array([0.0, 1 / 3, 2 / 3, 1.0], np.float32)
    for path, inputs in seen.items():
        if path in ("stem", "head"):
            continue
        inputs = np.asarray(inputs).reshape(-1, 1)
        assert np.all(np.min(np.abs(inputs - levels), axis=1) < 1e-6), path


def test_mobilenet_width_must_be_positive():
    with pytest.raises(ConfigError, match="config.model.width"):
        models.build(dict(name="mobilenet_v2", width=0), 10)


def test_new_models_are_registered():
    assert {"resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2"} <= set(models.names())


IMAGENET_CONFIGS = {"ldnq_imagenet_resnet18": "resnet18", "ldnq_imagenet_resnet34": "resnet34",
                    "ldnq_imagenet_resnet50": "resnet50", "metaquant_imagenet_resnet18": "resnet18"}


@pytest.mark.parametrize("name,torchvision_model", IMAGENET_CONFIGS.items())
def test_imagenet_configs_start_from_a_converted_torchvision_checkpoint(name, torchvision_model):
    import ml_collections
    from conftest import load_config
    from jaxquant import pretrained
    config = load_config(name)
    assert isinstance(config, ml_collections.ConfigDict)
    assert config.dataset.name == "imagenet2012"
    assert config.init_checkpoint == f"runs/torchvision_{torchvision_model}"
    # the converted checkpoint has exactly the structure of the config's model (warm start accepts it)
    want = jax.tree.map(lambda s: s.shape, _shapes(pretrained.MODELS[torchvision_model]))
    assert jax.tree.map(lambda s: s.shape, _shapes(config.model)) == want


@pytest.mark.parametrize("name", IMAGENET_CONFIGS)
def test_imagenet_configs_validate_once_their_method_exists(name):
    from conftest import load_config
    from jaxquant import methods
    from jaxquant.config_check import validate
    config = load_config(name)
    if config.method.name not in methods.names():
        pytest.skip(f"method {config.method.name!r} is not registered on this branch yet")
    validate(config)
