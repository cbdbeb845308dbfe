"""Pieces shared by every model: the config switches, conv/dense/BatchNorm
builders, the nonlinearity, DoReFa activation quantization and the basic
residual block (He et al., CVPR'16) used by both ResNet families.

Activation quantization follows DoReFa (Zhou et al. 2016) as PD-QAT and the
DoReFa baseline use it (METHODS.md §5, §6): the input of every conv/dense layer
except the first (`stem`) and the classifier (`head`) is replaced by
q_k(clip(x, 0, 1)), q_k(x) = round((2^k - 1) x) / (2^k - 1), with an identity
straight-through gradient; and every ReLU of the network becomes clip(x, 0, 1)
(in both passes), so the layer inputs already lie in [0, 1].
"""
from __future__ import annotations

from jaxquant.errors import ConfigError

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxquant import quantizers

Array = jax.Array
INITS = ("default", "xavier_uniform", "torch")


@dataclasses.dataclass(frozen=True)
class Switches:
    """Model switches read from `config.model` (same meaning on every model).

    affine_bn:   BatchNorm with learnable scale and bias (False: normalisation
                 only, as md-bnn / pmf use).
    use_bias:    biases on the conv/dense layers other than `head`; None = the
                 model's default (False for layers followed by BatchNorm in the
                 ResNets and VGG, True in the MLP and LeNet).
    head_bias:   bias on the classifier `head` (default True).
    act_bits:    0 = off; k in 1..8 = DoReFa k-bit activations at the inputs of
                 all conv/dense layers but `stem` and `head`; ReLU -> clip(0, 1).
    bn_momentum: running-average decay of the BatchNorm statistics (Flax
                 convention: 0.9 here = PyTorch momentum 0.1).
    bn_eps:      BatchNorm epsilon.
    init:        'default' (Flax: lecun-normal kernels, zero biases),
                 'xavier_uniform' (md-bnn / pmf: xavier-uniform kernels,
                 normal(0, 0.1) biases) or 'torch' (PyTorch's nn.Conv2d / nn.Linear
                 default, e.g. con-qat: kernels and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    full_precision_layers: layers (param path prefixes) kept at 32 bits
                 (`config.quant.full_precision_layers`, set by the trainer):
                 their input activations stay unquantized too (resnet20q).
    """
    affine_bn: bool = True
    use_bias: Optional[bool] = None
    head_bias: bool = True
    act_bits: int = 0
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5
    init: str = "default"
    full_precision_layers: tuple = ()

    def bias(self, default: bool) -> bool:
        """Whether a non-head layer gets a bias: `use_bias` if set, else `default`."""
        return default if self.use_bias is None else bool(self.use_bias)


def switches_from_config(cfg: Any) -> Switches:
    """Read and validate the switches from a `config.model` ConfigDict / dict."""
    init = cfg.get("init", "default")
    if init not in INITS:
        raise ConfigError(f"config.model.init must be one of {', '.join(INITS)}; got {init!r}.")
    act_bits = cfg.get("act_bits", 0)
    if act_bits is None:
        act_bits = 0
    if act_bits != 0:
        try:
            act_bits = quantizers.check_bits(act_bits, "config.model.act_bits")
        except (TypeError, ValueError):
            raise ConfigError(f"config.model.act_bits must be 0 (off) or an integer in 1..8; "
                             f"got {act_bits!r}.") from None
    momentum = float(cfg.get("bn_momentum", 0.9))
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"config.model.bn_momentum must be in [0, 1) (Flax convention, "
                         f"0.9 = PyTorch 0.1); got {momentum!r}.")
    use_bias = cfg.get("use_bias", None)
    return Switches(affine_bn=bool(cfg.get("affine_bn", True)),
                    use_bias=None if use_bias is None else bool(use_bias),
                    head_bias=bool(cfg.get("head_bias", True)),
                    act_bits=int(act_bits), bn_momentum=momentum,
                    bn_eps=float(cfg.get("bn_eps", 1e-5)), init=init)


def kernel_init(sw: Switches):
    """Kernel initializer: Flax's lecun-normal, xavier-uniform, or PyTorch's default.

    Xavier-uniform draws U(-b, b), b = sqrt(6 / (fan_in + fan_out)), with the
    receptive field counted in both fans (PyTorch's xavier_uniform_). 'torch' is
    PyTorch's reset_parameters: kaiming_uniform_(a=sqrt(5)), i.e. gain sqrt(2 / (1 + 5)),
    bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in) (fan_in = in_channels / groups * kh * kw),
    a variance scaling of 1/3 on fan_in.
    """
    if sw.init == "xavier_uniform":
        return nn.initializers.xavier_uniform()
    if sw.init == "torch":
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    return nn.initializers.lecun_normal()


def bias_init(sw: Switches):
    """Bias initializer: zeros, or normal(0, 0.1) with 'xavier_uniform' (md-bnn 1-D init);
    with 'torch' the layer draws it from its fan_in (`_FanInBias`)."""
    if sw.init == "xavier_uniform":
        return nn.initializers.normal(stddev=0.1)
    return nn.initializers.zeros


class _FanInBias:
    """Mixin for nn.Dense / nn.Conv: the bias is drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = the product of the kernel's shape but the last axis (PyTorch's default bias;
    Flax's bias initializers see only the bias shape, so the kernel, created first, gives it)."""

    def param(self, name, init_fn, *init_args, **init_kwargs):
        if name == "bias":
            fan_in = int(np.prod(self.get_variable("params", "kernel").shape[:-1]))
            init_fn = _symmetric_uniform(fan_in ** -0.5)
        return nn.Module.param(self, name, init_fn, *init_args, **init_kwargs)


def _symmetric_uniform(bound: float):
    """Initializer U(-bound, bound)."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class _TorchConv(_FanInBias, nn.Conv):
    pass


class _TorchDense(_FanInBias, nn.Dense):
    pass


def conv(sw: Switches, features: int, kernel: int, stride: int = 1, *, name: str,
         bias: bool, groups: int = 1) -> nn.Conv:
    """k x k convolution with PyTorch-style symmetric padding (k - 1) // 2;
    `groups` = input channels makes it depthwise (kernel [k, k, 1, features])."""
    pad = (kernel - 1) // 2
    return (_TorchConv if sw.init == "torch" else nn.Conv)(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=bias, feature_group_count=groups,
                   kernel_init=kernel_init(sw), bias_init=bias_init(sw), name=name)


def dense(sw: Switches, features: int, *, name: str, bias: bool) -> nn.Dense:
    """Fully connected layer."""
    return (_TorchDense if sw.init == "torch" else nn.Dense)(features, use_bias=bias, kernel_init=kernel_init(sw),
                    bias_init=bias_init(sw), name=name)


def head(sw: Switches, num_classes: int) -> nn.Dense:
    """The classifier, always named `head`."""
    return dense(sw, num_classes, name="head", bias=sw.head_bias)


def batch_norm(sw: Switches, train: bool, name: str) -> nn.BatchNorm:
    """BatchNorm over the last axis; batch statistics when training, running ones otherwise."""
    return nn.BatchNorm(use_running_average=not train, momentum=sw.bn_momentum,
                        epsilon=sw.bn_eps, use_scale=sw.affine_bn, use_bias=sw.affine_bn,
                        name=name)


def activation(sw: Switches, x: Array) -> Array:
    """ReLU, or clip(x, 0, 1) when activations are quantized (DoReFa)."""
    if sw.act_bits:
        return jnp.clip(x, 0.0, 1.0)
    return nn.relu(x)


def quantize_input(sw: Switches, x: Array) -> Array:
    """Input of a quantized layer: q_k(clip(x, 0, 1)) with identity STE, or x when off."""
    if not sw.act_bits:
        return x
    q = functools.partial(quantizers.dorefa_activation, bits=sw.act_bits)
    return quantizers.straight_through(q)(x)


def pad_shortcut(x: Array, features: int, stride: int) -> Array:
    """Option-A shortcut: subsample by `stride`, zero-pad channels up to `features`.

    The extra channels are split evenly, (features - c) // 2 before the input's.
    """
    x = x[:, ::stride, ::stride, :]
    extra = features - x.shape[-1]
    before = extra // 2
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (before, extra - before)))


class BasicBlock(nn.Module):
    """Post-activation basic block: act(bn2(conv2(act(bn1(conv1 x)))) + shortcut(x)).

    The shortcut is the identity when shape is kept; otherwise option 'A'
    (`pad_shortcut`, no params) or 'B' (1x1 conv `shortcut` + `bn_shortcut`).
    With act_bits, conv1 and the projection see the quantized input; the
    identity / option-A path carries the unquantized x.
    """
    features: int
    stride: int
    shortcut: str
    sw: Switches

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        sw = self.sw
        xq = quantize_input(sw, x)
        y = conv(sw, self.features, 3, self.stride, name="conv1", bias=sw.bias(False))(xq)
        y = activation(sw, batch_norm(sw, train, "bn1")(y))
        y = conv(sw, self.features, 3, 1, name="conv2", bias=sw.bias(False))(quantize_input(sw, y))
        y = batch_norm(sw, train, "bn2")(y)
        if self.stride == 1 and x.shape[-1] == self.features:
            s = x
        elif self.shortcut == "A":
            s = pad_shortcut(x, self.features, self.stride)
        else:
            s = conv(sw, self.features, 1, self.stride, name="shortcut", bias=sw.bias(False))(xq)
            s = batch_norm(sw, train, "bn_shortcut")(s)
        return activation(sw, y + s)
