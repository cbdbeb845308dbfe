"""jaxquant.pretrained and the jaxquant.convert CLI: torchvision state_dicts -> Flax checkpoints."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxquant import checkpoints, convert, models, pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torch_logits_and_file(tmp_path, model, num_classes, size, batch=2):
    torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch reference "
                                "networks cannot be built (pip install torch to run this test)")
    import torch_reference
    net = torch_reference.build(model, num_classes)
    x = np.random.RandomState(1).randn(batch, 3, size, size).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    path = str(tmp_path / f"{model}.pth")
    torch.save(net.state_dict(), path)
    return net, x, logits, path


def _flax_logits(model, params, batch_stats, x_nchw):
    module = models.build(pretrained.MODELS[model], params["head"]["kernel"].shape[-1])
    x = jnp.asarray(np.transpose(x_nchw, (0, 2, 3, 1)))
    return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(
        {"params": params, "batch_stats": batch_stats}, x))


def _assert_same_logits(got, want):
    scale = float(np.abs(want).max())
    assert scale > 1e-3  # the reference produced non-trivial logits
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("model,size", [("resnet50", 64), ("mobilenet_v2", 64)])  # resnet18: CLI test
def test_converted_weights_give_the_pytorch_logits(tmp_path, model, size):
    _, x, want, path = _torch_logits_and_file(tmp_path, model, num_classes=10, size=size)
    params, batch_stats, _ = pretrained.convert_state_dict(pretrained.read_state_dict(path), model)
    _assert_same_logits(_flax_logits(model, params, batch_stats, x), want)


def test_cli_writes_a_checkpoint_that_init_checkpoint_reads(tmp_path, capsys):
    _, x, want, path = _torch_logits_and_file(tmp_path, "resnet18", num_classes=7, size=64)
    out = str(tmp_path / "converted")
    assert convert.main(["--from", path, "--model", "resnet18", "--out", out]) == 0
    assert f"--config.init_checkpoint={out}" in capsys.readouterr().out
    params, batch_stats, step = checkpoints.load_weights(out)
    assert step == 0
    _assert_same_logits(_flax_logits("resnet18", params, batch_stats, x), want)
    from jaxquant.train import _warm_start  # what config.init_checkpoint=out runs
    fresh = _random_variables("resnet18", 7)
    warm, warm_bs = _warm_start(out, fresh["params"], fresh["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, (warm, warm_bs), (params, batch_stats))
    import json
    with open(os.path.join(out, "config.json")) as f:
        info = json.load(f)
    assert info["model"] == {"name": "resnet18", "stem": "imagenet"} and info["num_classes"] == 7
    assert info["converted_from"] == os.path.abspath(path)


def test_safetensors_file_converts_like_the_pth(tmp_path):
    torch_st = pytest.importorskip("safetensors.torch")
    net, _, _, path = _torch_logits_and_file(tmp_path, "mobilenet_v2", num_classes=5, size=32)
    st_path = str(tmp_path / "m.safetensors")
    torch_st.save_file(net.state_dict(), st_path)
    from_pth = pretrained.convert_state_dict(pretrained.read_state_dict(path), "mobilenet_v2")
    from_st = pretrained.convert_state_dict(pretrained.read_state_dict(st_path), "mobilenet_v2")
    jax.tree.map(np.testing.assert_array_equal, from_pth[:2], from_st[:2])


def _random_variables(model, num_classes):
    """Random float32 variables of `model` (numpy: model.init's random calls compile slowly)."""
    module = models.build(pretrained.MODELS[model], num_classes)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                                train=False))
    rng = np.random.RandomState(0)
    return jax.tree.map(lambda s: rng.randn(*s.shape).astype(np.float32), shapes)


def _torchvision_layout(model, params, batch_stats):
    """The inverse mapping written out here: Flax leaves -> torchvision keys and layouts."""
    state = {}
    for collection, tree in (("params", params), ("batch_stats", batch_stats)):
        for path, leaf in traverse_util.flatten_dict(tree).items():
            leaf = np.asarray(leaf)
            if leaf.ndim == 4:
                leaf = leaf.transpose(3, 2, 0, 1)
            elif leaf.ndim == 2:
                leaf = leaf.T
            state[pretrained.torch_name(model, collection, path)] = np.ascontiguousarray(leaf)
    return state


def test_safetensors_round_trip_without_torch(tmp_path):
    from safetensors.numpy import save_file
    variables = _random_variables("resnet18", 3)
    state = _torchvision_layout("resnet18", variables["params"], variables["batch_stats"])
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["fc.weight"].shape == (3, 512)
    state["bn1.num_batches_tracked"] = np.array(3, np.int64)
    path = str(tmp_path / "r18.safetensors")
    save_file(state, path)
    out = pretrained.convert(path, "resnet18", str(tmp_path / "out"))
    params, batch_stats, _ = checkpoints.load_weights(out)
    jax.tree.map(np.testing.assert_array_equal, (params, batch_stats),
                 (variables["params"], variables["batch_stats"]))


def test_torch_names_follow_torchvision():
    assert pretrained.torch_name("resnet50", "params", ("stage3_block0", "shortcut", "kernel")) == \
        "layer3.0.downsample.0.weight"
    assert pretrained.torch_name("resnet50", "batch_stats", ("stage4_block2", "bn3", "var")) == \
        "layer4.2.bn3.running_var"
    assert pretrained.torch_name("resnet18", "params", ("bn_stem", "scale")) == "bn1.weight"
    mb = lambda *p: pretrained.torch_name("mobilenet_v2", "params", p)  # noqa: E731
    assert mb("stage1_block0", "depthwise", "kernel") == "features.1.conv.0.0.weight"
    assert mb("stage1_block0", "bn_project", "bias") == "features.1.conv.2.bias"
    # stage 3 (t=6) starts after 1 + 2 blocks: features.4
    assert mb("stage3_block0", "bn_depthwise", "scale") == "features.4.conv.1.1.weight"
    assert mb("stage3_block0", "project", "kernel") == "features.4.conv.2.weight"
    assert mb("stage7_block0", "bn_project", "bias") == "features.17.conv.3.bias"
    assert mb("conv_last", "kernel") == "features.18.0.weight"
    assert mb("head", "kernel") == "classifier.1.weight"


@pytest.fixture(scope="module")
def r18_state():
    v = _random_variables("resnet18", 10)
    return _torchvision_layout("resnet18", v["params"], v["batch_stats"])


def test_missing_key_is_named_with_its_shape(r18_state):
    state = dict(r18_state)
    del state["layer4.1.bn2.running_var"]
    with pytest.raises(pretrained.ConvertError, match=r"1 missing keys: layer4\.1\.bn2\.running_var "
                                                   r"\(expected shape \(512,\)\)"):
        pretrained.convert_state_dict(state, "resnet18")


def test_mis_shaped_and_unexpected_keys_are_named(r18_state):
    state = dict(r18_state, **{"layer1.0.conv1.weight": np.zeros((64, 64, 1, 1), np.float32),
                               "aux.weight": np.zeros(3, np.float32)})
    with pytest.raises(pretrained.ConvertError) as e:
        pretrained.convert_state_dict(state, "resnet18")
    msg = str(e.value)
    assert "layer1.0.conv1.weight has shape (64, 64, 1, 1), expected (64, 64, 3, 3)" in msg
    assert "1 unexpected keys: aux.weight" in msg
    assert "missing" not in msg


def test_wrong_model_lists_the_problems(r18_state):
    with pytest.raises(pretrained.ConvertError, match=r"not a torchvision resnet34 state_dict: "
                                                   r"\d+ missing keys: layer1\.2\.bn1\.bias \(expected shape \(64,\)\)"):
        pretrained.convert_state_dict(r18_state, "resnet34")


def test_pth_holding_pickled_code_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    path = str(tmp_path / "whole_model.pth")
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, not a state_dict
    with pytest.raises(pretrained.ConvertError, match="not the whole model"):
        pretrained.read_state_dict(path)


def test_cli_user_error_exits_2_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "jaxquant.convert", "--from",
                        str(tmp_path / "nope.pth"), "--model", "resnet18", "--out", str(tmp_path / "o")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "nope.pth" in r.stderr and "no such file" in r.stderr
    assert "Traceback" not in r.stderr
