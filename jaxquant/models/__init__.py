"""Flax Linen models for quantization experiments: `build(config.model, num_classes)`.

Models (`config.model.name`):
  mlp                  MLP on flattened input; `features` (hidden sizes, default
                       (256, 256)), `batch_norm` (default True).
  lenet5               LeNet-5-style CNN (6@5x5, pool, 16@5x5, pool, fc 120, 84);
                       'SAME' padding, runs on 8x8 and 28x28; `batch_norm` (True).
  resnet20/32/44/56/110  CIFAR ResNet 6n+2, widths 16/32/64; `shortcut` 'A'
                       (default; zero-pad identity, no params) or 'B' (1x1 conv + BN).
  resnet18             `stem` 'cifar' (3x3, stride `stem_stride`, default 1; 2 for
                       64x64) or 'imagenet' (7x7/2 + max-pool); projection shortcuts.
                       With stem='imagenet' it is torchvision's resnet18 (11.69M).
  resnet34/50/101/152  torchvision's ImageNet ResNets (7x7/2 stem + max-pool; basic
                       blocks for 34, bottlenecks with the stride on the 3x3 conv for
                       50+; 21.80M / 25.56M / 44.55M / 60.19M params at 1000 classes).
  mobilenet_v2         torchvision's MobileNetV2 (ReLU6, last channel 1280; 3.50M);
                       `width` (1.0). Its dropout is off (the trainer has no dropout rng).
  vgg16                VGG-16 + BN, CIFAR variant (md-bnn / pmf): 13 convs, fc 512,
                       fc 512, head; `stem_stride` (default 1).
  resnet20q            PD-QAT's pre-activation ResNet (widths 16/32/64 x `expand`,
                       default 5; `depth` 6n+2, default 20) with switchable BatchNorm
                       (`switchable_bn`, default True): apply(..., low_precision=False)
                       runs the full-precision pass (see `resnet20q.py`).
  transformer          decoder-only pre-LN byte LM (`transformer.py`): `layers` (4), `width`
                       (256), `heads` (4), `seq_len` (256, the longest input), `mlp_ratio` (4),
                       `absmax_act_bits` (0 = off; 8 = BitNet b1.58's per-token absmax
                       activations at the projection inputs), `weight_scale` ('none' | 'learned':
                       a learned per-projection scalar after the matmul, kernels in level units
                       U(-1, 1), for methods with unscaled levels); vocab = num_classes (256 for
                       bytes). Input: int tokens (B, T); output logits (B, T, vocab). The DoReFa
                       switch `act_bits` does not apply (use `absmax_act_bits`).
  lstm                 byte LSTM LM (`lstm.py`, ProxQuant's quantized LSTM): embedding ->
                       `layers` (1) LSTM layers of `hidden` (300) units -> head; `embed` (0 =
                       `hidden`). Input int tokens (B, T), any T; output logits (B, T, vocab).
                       Param paths `lstm{l}/ih/kernel`, `lstm{l}/hh/kernel`, `lstm{l}/ih/bias`.

`python -m jaxquant.convert` imports torchvision checkpoints of resnet18 (as
stem='imagenet'), resnet34/50/101/152 and mobilenet_v2.

Switches (every model; see `layers.Switches`): `affine_bn` (True), `use_bias`
(None = model default: no bias on layers followed by BN in ResNets/VGG, biases in
MLP/LeNet), `head_bias` (True), `act_bits` (0 = off; 1..8 = DoReFa activation
quantization at every conv/dense input except `stem` and `head`, ReLU (ReLU6) becomes
clip(x, 0, 1)), `bn_momentum` (0.9), `bn_eps` (1e-5), `init` ('default' |
'xavier_uniform').

Call convention: `module.apply({'params': p, 'batch_stats': bs}, x, train=bool,
mutable=['batch_stats'] or [])`, x float32 NHWC; returns logits (N, num_classes).

Param names (regex rules in `config.quant` rely on them): the first layer is
`stem`, the classifier `head`, 1x1 projection shortcuts `shortcut`, every
BatchNorm starts with `bn` (`bn_stem`, `bn1`, `bn_shortcut`, `bn_fc0`, ...),
residual blocks `stage{s}_block{b}` (s from 1, b from 0; inside them `conv1`..`conv3`,
`bn1`..`bn3`, or MobileNetV2's `expand`, `depthwise`, `project` + `bn_*`), MobileNetV2's
final 1x1 conv `conv_last` / `bn_last`, MLP hidden layers
after the first `dense1`, `dense2`, ..., VGG convs after the first `conv1` ..
`conv12`, VGG/LeNet hidden fc layers `fc0`, `fc1`.
"""
from __future__ import annotations

from jaxquant.errors import ConfigError

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn

from jaxquant.models import layers
from jaxquant.models.layers import Switches, switches_from_config
from jaxquant.models.lenet import LeNet5
from jaxquant.models.lstm import LSTMLM
from jaxquant.models.mlp import MLP
from jaxquant.models.mobilenet import MobileNetV2
from jaxquant.models.resnet18 import STEMS, ResNet18
from jaxquant.models.resnet_cifar import CifarResNet
from jaxquant.models.resnet_imagenet import ImageNetResNet
from jaxquant.models.resnet20q import ResNet20Q
from jaxquant.models.transformer import WEIGHT_SCALES, TransformerLM
from jaxquant.models.vgg import VGG16

__all__ = ["build", "names", "Switches", "MLP", "LeNet5", "CifarResNet", "ResNet18", "VGG16",
           "ImageNetResNet", "MobileNetV2", "ResNet20Q", "TransformerLM",
           "LSTMLM"]


# The model-specific `config.model` keys with their defaults (besides the
# switches, `layers.Switches`); config_check rejects other keys.
_DEFAULTS = {
    "mlp": dict(features=(256, 256), batch_norm=True),
    "lenet5": dict(batch_norm=True),
    **{f"resnet{d}": dict(shortcut="A") for d in (20, 32, 44, 56, 110)},
    "resnet18": dict(stem="cifar", stem_stride=1),
    "vgg16": dict(stem_stride=1),
    **{f"resnet{d}": {} for d in (34, 50, 101, 152)},
    "mobilenet_v2": dict(width=1.0),
    "resnet20q": dict(depth=20, expand=5, switchable_bn=True),
    "transformer": dict(layers=4, width=256, heads=4, seq_len=256, mlp_ratio=4, absmax_act_bits=0,
                        weight_scale="none"),
    "lstm": dict(layers=1, hidden=300, embed=0),
}


def _get(cfg, key):
    return cfg.get(key, _DEFAULTS[cfg.get("name")][key])


def _mlp(cfg, n, sw):
    features = _get(cfg, "features")
    if isinstance(features, int) and not isinstance(features, bool):
        features = (features,)
    if (isinstance(features, (str, bytes)) or not features or not all(
            isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in features)):
        raise ConfigError(f"config.model.features must be a non-empty tuple of positive layer "
                          f"widths, e.g. (256, 256); got {features!r}.")
    return MLP(n, features=tuple(features),
               batch_norm=bool(_get(cfg, "batch_norm")), sw=sw)


def _lenet5(cfg, n, sw):
    return LeNet5(n, batch_norm=bool(_get(cfg, "batch_norm")), sw=sw)


def _cifar_resnet(depth):
    def make(cfg, n, sw):
        shortcut = str(_get(cfg, "shortcut")).upper()
        if shortcut not in ("A", "B"):
            raise ConfigError(f"config.model.shortcut must be 'A' (zero-pad identity) or 'B' "
                             f"(1x1 conv + BN); got {cfg.get('shortcut')!r}.")
        return CifarResNet(n, depth=depth, shortcut=shortcut, sw=sw)
    return make


def _stride(cfg) -> int:
    s = _get(cfg, "stem_stride")
    if s not in (1, 2):
        raise ConfigError(f"config.model.stem_stride must be 1 or 2; got {s!r}.")
    return int(s)


def _resnet18(cfg, n, sw):
    stem = _get(cfg, "stem")
    if stem not in STEMS:
        raise ConfigError(f"config.model.stem must be one of {', '.join(STEMS)}; got {stem!r}.")
    return ResNet18(n, stem=stem, stem_stride=_stride(cfg), sw=sw)


def _vgg16(cfg, n, sw):
    return VGG16(n, stem_stride=_stride(cfg), sw=sw)


def _imagenet_resnet(depth):
    def make(cfg, n, sw):
        return ImageNetResNet(n, depth=depth, sw=sw)
    return make


def _mobilenet_v2(cfg, n, sw):
    width = _get(cfg, "width")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ConfigError(f"config.model.width must be a positive number (1.0 = torchvision's "
                          f"mobilenet_v2); got {width!r}.")
    return MobileNetV2(n, width=float(width), sw=sw)


def _resnet20q(cfg, n, sw):
    return ResNet20Q(n, depth=int(_get(cfg, "depth")), expand=int(_get(cfg, "expand")),
                     switchable_bn=bool(_get(cfg, "switchable_bn")), sw=sw)


def _positive_int(cfg, key) -> int:
    v = _get(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"config.model.{key} must be a positive integer; got {v!r}.")
    return v


def _transformer(cfg, n, sw):
    width, heads = _positive_int(cfg, "width"), _positive_int(cfg, "heads")
    if width % heads:
        raise ConfigError(f"config.model.width={width} must be a multiple of config.model.heads={heads}.")
    if sw.act_bits:
        raise ConfigError("config.model.act_bits (DoReFa activations) does not apply to the "
                          "transformer; set config.model.absmax_act_bits (e.g. 8, BitNet) instead.")
    act = _get(cfg, "absmax_act_bits")
    if isinstance(act, bool) or act not in (0, *range(2, 9)):
        raise ConfigError(f"config.model.absmax_act_bits must be 0 (off) or an integer in 2..8 "
                          f"(8 = BitNet b1.58); got {act!r}.")
    scale = _get(cfg, "weight_scale")
    if scale not in WEIGHT_SCALES:
        raise ConfigError(f"config.model.weight_scale must be one of {', '.join(WEIGHT_SCALES)}; "
                          f"got {scale!r}.")
    return TransformerLM(vocab=n, layers=_positive_int(cfg, "layers"), width=width, heads=heads,
                         seq_len=_positive_int(cfg, "seq_len"),
                         mlp_ratio=_positive_int(cfg, "mlp_ratio"), absmax_act_bits=int(act),
                         weight_scale=scale, sw=sw)


def _lstm(cfg, n, sw):
    if sw.act_bits:
        raise ConfigError("config.model.act_bits (DoReFa activations) does not apply to the LSTM; "
                          "ProxQuant quantizes its weights only. Set config.model.act_bits=0.")
    embed = _get(cfg, "embed")
    if isinstance(embed, bool) or not isinstance(embed, int) or embed < 0:
        raise ConfigError(f"config.model.embed must be 0 (= hidden) or a positive integer; got {embed!r}.")
    return LSTMLM(vocab=n, layers=_positive_int(cfg, "layers"), hidden=_positive_int(cfg, "hidden"),
                  embed=embed, sw=sw)


_REGISTRY: dict[str, Callable[[Any, int, Switches], nn.Module]] = {
    "mlp": _mlp,
    "lenet5": _lenet5,
    **{f"resnet{d}": _cifar_resnet(d) for d in (20, 32, 44, 56, 110)},
    "resnet18": _resnet18,
    "vgg16": _vgg16,
    **{f"resnet{d}": _imagenet_resnet(d) for d in (34, 50, 101, 152)},
    "mobilenet_v2": _mobilenet_v2,
    "resnet20q": _resnet20q,
    "transformer": _transformer,
    "lstm": _lstm,
}


def names() -> list[str]:
    """The valid values of `config.model.name`."""
    return list(_REGISTRY)


def keys(name: str) -> dict | None:
    """The `config.model` keys model `name` reads, with defaults (None: unknown model)."""
    if name not in _REGISTRY or name not in _DEFAULTS:
        return None
    switches = {f.name: f.default for f in dataclasses.fields(Switches)
                if f.name != "full_precision_layers"}  # set by the trainer from config.quant
    return {**switches, **_DEFAULTS.get(name, {})}


def build(cfg: Any, num_classes: int, full_precision_layers: Sequence[str] = ()) -> nn.Module:
    """The Flax module named by `cfg.name` (a `config.model` ConfigDict or dict).

    `full_precision_layers` (layer names, see `Switches`) are kept at 32 bits by the
    models that quantize activations per layer (resnet20q).
    """
    name = cfg.get("name", None)
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown model {name!r} (config.model.name). Valid models: "
                         f"{', '.join(names())}. Set --config.model.name to one of them.")
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be a positive integer; got {num_classes!r}.")
    sw = dataclasses.replace(switches_from_config(cfg),
                             full_precision_layers=tuple(full_precision_layers))
    return _REGISTRY[name](cfg, int(num_classes), sw)
