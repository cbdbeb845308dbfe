"""Import torchvision (PyTorch) pretrained checkpoints into jaxquant's models (the
ImageNet starting points of L-DNQ, AAAI'19, and MetaQuant, NeurIPS'19).

`convert` (CLI: `python -m jaxquant.convert --from resnet18.pth --model resnet18
--out runs/torchvision_resnet18`) reads a PyTorch `state_dict` with torchvision's
parameter names (`.pth` / `.pt` through `torch.load(..., weights_only=True)` when
torch is installed, or
`.safetensors` with the `safetensors` package and no torch), maps it onto the
Flax params / batch_stats of the same architecture, and writes a checkpoint
directory that `config.init_checkpoint` (and `checkpoints.load_weights`)
accepts, with a `config.json` naming the model.

Mapping (torchvision -> Flax): conv weight [O, I, H, W] -> kernel [H, W, I, O];
linear weight [out, in] -> kernel [in, out]; BatchNorm weight / bias ->
params scale / bias, running_mean / running_var -> batch_stats mean / var;
`num_batches_tracked` is dropped. Module names: see `torch_name`.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxquant.errors import UserError

# --model -> config.model of the jaxquant model with torchvision's architecture.
MODELS = {
    "resnet18": dict(name="resnet18", stem="imagenet"),
    "resnet34": dict(name="resnet34"),
    "resnet50": dict(name="resnet50"),
    "resnet101": dict(name="resnet101"),
    "resnet152": dict(name="resnet152"),
    "mobilenet_v2": dict(name="mobilenet_v2"),
}
_HEAD = {"resnet": "fc", "mobilenet_v2": "classifier.1"}
_LEAVES = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
           ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}
_IGNORED_SUFFIX = "num_batches_tracked"
_SHOWN = 8  # keys listed per kind of problem


class ConvertError(UserError):
    """A checkpoint that cannot be read or does not match the chosen model."""


def _family(model: str) -> str:
    return "mobilenet_v2" if model == "mobilenet_v2" else "resnet"


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ConvertError(f"unknown --model {model!r}; convertible torchvision models: "
                           f"{', '.join(MODELS)}.")


def _resnet_module(path: tuple[str, ...]) -> str:
    top = {"stem": "conv1", "bn_stem": "bn1", "head": "fc"}
    if path[0] in top:
        return top[path[0]]
    stage, block = path[0].removeprefix("stage").split("_block")
    inner = {"shortcut": "downsample.0", "bn_shortcut": "downsample.1"}.get(path[1], path[1])
    return f"layer{stage}.{block}.{inner}"


def _mobilenet_module(path: tuple[str, ...]) -> str:
    from jaxquant.models.mobilenet import SETTINGS
    last = 1 + sum(n for _, _, n, _ in SETTINGS)
    top = {"stem": "features.0.0", "bn_stem": "features.0.1", "conv_last": f"features.{last}.0",
           "bn_last": f"features.{last}.1", "head": "classifier.1"}
    if path[0] in top:
        return top[path[0]]
    stage, block = (int(v) for v in path[0].removeprefix("stage").split("_block"))
    t = SETTINGS[stage - 1][0]
    index = 1 + sum(n for _, _, n, _ in SETTINGS[:stage - 1]) + block
    order = (["expand"] if t != 1 else []) + ["depthwise"]
    parts = {name: f"conv.{i}.0" for i, name in enumerate(order)}
    parts.update({f"bn_{name}": f"conv.{i}.1" for i, name in enumerate(order)})
    parts.update(project=f"conv.{len(order)}", bn_project=f"conv.{len(order) + 1}")
    return f"features.{index}.{parts[path[1]]}"


def torch_name(model: str, collection: str, path: tuple[str, ...]) -> str:
    """torchvision's state_dict key of the Flax leaf `collection/path` of `model`.

    ResNet: stem -> conv1, bn_stem -> bn1, stage{s}_block{b} -> layer{s}.{b}
    (shortcut / bn_shortcut -> downsample.0 / .1), head -> fc. MobileNetV2:
    stem / bn_stem -> features.0.{0,1}, stage{s}_block{b} -> features.{i}
    (i counts blocks from 1; expand, depthwise -> conv.{j}.{0,1}, project ->
    conv.{j}, bn_project -> conv.{j+1}), conv_last / bn_last -> features.18.{0,1},
    head -> classifier.1. E.g. ('params', ('stage1_block0', 'bn1', 'scale')) ->
    'layer1.0.bn1.weight'.
    """
    module = (_mobilenet_module if _family(model) == "mobilenet_v2" else _resnet_module)(path[:-1])
    return f"{module}.{_LEAVES[(collection, path[-1])]}"


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """PyTorch layout of a Flax leaf shape: HWIO -> OIHW, (in, out) -> (out, in)."""
    if len(shape) == 4:
        h, w, i, o = shape
        return (o, i, h, w)
    if len(shape) == 2:
        return (shape[1], shape[0])
    return tuple(shape)


def _to_flax(array: np.ndarray) -> np.ndarray:
    """A torch tensor's values in Flax layout: OIHW -> HWIO, (out, in) -> (in, out)."""
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:
        return array.T
    return array


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """{key: float array} of a PyTorch checkpoint (.pth/.pt with torch, or .safetensors).

    A `.pth` holding {'state_dict': ...} or {'model': ...} is unwrapped, and a
    `module.` prefix on every key (DataParallel) is removed. `.pth` files are
    read with `weights_only=True`: they never run pickled code.
    """
    if not os.path.isfile(path):
        raise ConvertError(f"--from {path!r}: no such file.")
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ConvertError("reading .safetensors needs the safetensors package: "
                               "pip install safetensors.") from None
        try:
            state = load_file(path)
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise ConvertError(f"cannot read {path!r} as safetensors: {e}") from None
    else:
        state = _read_torch(path)
    if set(state) and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConvertError(
            f"reading {path!r} needs PyTorch (pip install torch), or convert it to safetensors "
            f"where torch is installed: safetensors.torch.save_file(torch.load(path), "
            f"'model.safetensors'), and pass that file.") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError for corrupt files, ...
        raise ConvertError(
            f"cannot read {path!r} as a PyTorch state_dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}). Save the weights with "
            f"torch.save(model.state_dict(), path), not the whole model.") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConvertError(f"{path!r} does not hold a state_dict (a dict of tensors); save it with "
                           f"torch.save(model.state_dict(), path).")
    return {k: v.detach().to(torch.float32).cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
            for k, v in obj.items()}


def _num_classes(model: str, state: dict) -> int:
    head = state.get(f"{_HEAD[_family(model)]}.weight")
    return int(head.shape[0]) if head is not None and head.ndim == 2 else 1000


def _problems(kind: str, items: list[str]) -> str:
    more = f" (and {len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return f"{len(items)} {kind}: {'; '.join(items[:_SHOWN])}{more}"


def convert_state_dict(state: dict[str, Any], model: str, source: str = "the checkpoint"
                       ) -> tuple[dict, dict, dict]:
    """(params, batch_stats, config.model) of jaxquant `model` from a torchvision state_dict.

    `state` maps torchvision keys to arrays (numpy or anything np.asarray takes).
    Every Flax leaf must find its key with the matching (PyTorch-layout) shape,
    and every key but `*.num_batches_tracked` must be used; otherwise a
    `ConvertError` lists the missing, mis-shaped and unexpected keys.
    """
    from jaxquant import models
    _check_model(model)
    cfg = dict(MODELS[model])
    state = {k: np.asarray(v) for k, v in state.items()}
    module = models.build(cfg, _num_classes(model, state))
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)),
                                                train=False))
    out: dict[str, dict] = {"params": {}, "batch_stats": {}}
    missing, misshaped, used = [], [], set()
    for collection in out:
        for path, leaf in traverse_util.flatten_dict(shapes[collection]).items():
            key = torch_name(model, collection, path)
            want = _torch_shape(leaf.shape)
            if key not in state:
                missing.append(f"{key} (expected shape {want})")
                continue
            used.add(key)
            if tuple(state[key].shape) != want:
                misshaped.append(f"{key} has shape {tuple(state[key].shape)}, expected {want}")
                continue
            out[collection][path] = _to_flax(state[key]).astype(np.float32)
    extra = [k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIX)]
    if missing or misshaped or extra:
        found = [_problems(kind, items) for kind, items in
                 (("missing keys", missing), ("mis-shaped keys", misshaped),
                  ("unexpected keys", extra)) if items]
        raise ConvertError(
            f"{source} is not a torchvision {model} state_dict: " + ". ".join(found) +
            f". Check --model (one of {', '.join(MODELS)}) and that the file holds "
            f"model.state_dict() of torchvision.models.{model}.")
    return (traverse_util.unflatten_dict(out["params"]),
            traverse_util.unflatten_dict(out["batch_stats"]), cfg)


def convert(source: str, model: str, out: str) -> str:
    """Convert the checkpoint file `source` for `model` into the directory `out`; returns `out`.

    `out` then holds `checkpoints/0` (weights {'params', 'batch_stats'}, read by
    `config.init_checkpoint=out`) and `config.json` ({'model': config.model,
    'num_classes', 'converted_from'}).
    """
    from jaxquant.checkpoints import Checkpointer
    _check_model(model)
    config_path = os.path.join(out, "config.json")
    if os.path.exists(config_path):
        try:
            with open(config_path) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = {}
        if "converted_from" not in previous:
            raise ConvertError(f"--out {out!r} holds a training run (config.json); choose an empty "
                               f"or new directory for the converted weights.")
    params, batch_stats, cfg = convert_state_dict(read_state_dict(source), model, repr(source))
    num_classes = int(params["head"]["kernel"].shape[-1])
    info = dict(model=cfg, num_classes=num_classes, converted_from=os.path.abspath(source),
                format=f"torchvision {model} state_dict")
    ckpt = Checkpointer(out, keep=1)
    ckpt.save(0, dict(params=params, batch_stats=batch_stats), info)
    ckpt.close()
    with open(config_path, "w") as f:
        json.dump(info, f, indent=2)
    return out
