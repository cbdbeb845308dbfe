"""Pre-activation CIFAR ResNet with switchable BatchNorm, PD-QAT's `resnet20q`
(Hounie, Elenter & Ribeiro, ICASSP'23; con-qat `models/resnet_quan.py`).

One network, two precisions sharing every conv/dense weight:
- `low_precision=True` (the default, so evaluation and export see the quantized
  network): the low-precision BatchNorm set, and every quantized conv input is
  q_b(clip(x, 0, 1)) (`layers.quantize_input`, b = `config.model.act_bits`);
- `low_precision=False`: the full-precision BatchNorm set (`bn*_fp`) and no
  activation quantization.
The nonlinearity is clip(x, 0, 1) in both passes. `stem` and `head` are never
fed quantized activations (and are excluded from weight quantization by the
PD-QAT configs): 18 block convs + 2 shortcut convs are the quantized layers.
A layer named in `Switches.full_precision_layers` (mixed precision, from
`config.quant.full_precision_layers`) also gets unquantized inputs, as con-qat's
train_selec.py sets both wbit and abit of those layers to 32.

Layer outputs for layer-wise constraints (METHODS.md §5): with the mutable
collection 'intermediates', every quantized conv `c` sows `c_input` (the input it
was given, already quantized in a low-precision pass) and `c_output` =
q(clip(c(input), 0, 1)) (q = the activation quantizer in a low-precision pass,
the identity otherwise), i.e. the conv's output before BatchNorm, as con-qat's
`eval_layers` compares them. Given `layer_inputs` (a nested dict like the
params, `{block: {conv: array}}`), the call instead sows, for each named conv,
`c_output` of that conv applied to the given input: a full-precision call with the
inputs sown by a low-precision call gives z^32_l = clip(W^32_l * x^b_l, 0, 1).
A call without `layer_inputs` also sows `conv1_output_bn` = conv2's input
q(clip(bn2(conv1(x)))), a block's first conv output after its BatchNorm: con-qat's
z_b for that layer (`get_activations`), used by PD-QAT's `zb_after_bn`.

Initialization: `config.model.init='torch'` gives con-qat's (PyTorch's default,
U(±1/sqrt(fan_in)) kernels and head bias); the Flax default is lecun-normal.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.models import layers
from jaxquant.models.layers import Switches

Array = jax.Array
WIDTHS = (16, 32, 64)
FP_SUFFIX = "_fp"  # name suffix of the full-precision BatchNorm set


def _clip(x: Array) -> Array:
    return jnp.clip(x, 0.0, 1.0)


def _switch_bn(module: nn.Module, sw: Switches, train: bool, name: str, fp_set: bool,
               x: Array) -> Array:
    """BatchNorm `name` (low precision) or `name_fp` (full precision) applied to x.

    While initializing, both sets are created (so `model.init` with either
    precision holds every parameter); the other set's output is discarded.
    """
    out = layers.batch_norm(sw, train, name + FP_SUFFIX if fp_set else name)(x)
    if module.switchable_bn and module.is_initializing():
        layers.batch_norm(sw, train, name if fp_set else name + FP_SUFFIX)(x)
    return out


class PreActBlockQ(nn.Module):
    """bn1 -> clip -> conv1 -> bn2 -> clip -> conv2, plus the shortcut.

    The shortcut is the identity when the shape is kept, else a quantized 1x1
    conv `shortcut` + `bn_shortcut` on the activated input (con-qat: when the
    stride is not 1). Names: `bn1` (before conv1), `conv1`, `bn2`, `conv2`,
    `shortcut`, `bn_shortcut`; the full-precision BN set adds `_fp`.
    """
    features: int
    stride: int
    sw: Switches
    switchable_bn: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool, low_precision: bool = True,
                 layer_inputs: Optional[dict] = None) -> Array:
        sw = self.sw
        fp_set = self.switchable_bn and not low_precision

        def bn(name, v):
            return _switch_bn(self, sw, train, name, fp_set, v)

        def q(v):
            return layers.quantize_input(sw, v) if low_precision else v

        def qconv(name, kernel, stride, v, after_bn_of=None):
            c = layers.conv(sw, self.features, kernel, stride, name=name, bias=sw.bias(False))
            if f"{self.name}/{name}" not in sw.full_precision_layers:  # mixed precision: 32-bit input
                v = q(v)
            y = c(v)
            if layer_inputs is None:
                self.sow("intermediates", name + "_input", v)
                self.sow("intermediates", name + "_output", q(_clip(y)))
                if after_bn_of:  # this conv's input = q(clip(bn(previous conv's output)))
                    self.sow("intermediates", after_bn_of + "_output_bn", v)
            elif name in layer_inputs:
                self.sow("intermediates", name + "_output", q(_clip(c(layer_inputs[name]))))
            return y

        out = _clip(bn("bn1", x))
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = bn("bn_shortcut", qconv("shortcut", 1, self.stride, out))
        else:
            shortcut = x
        y = _clip(bn("bn2", qconv("conv1", 3, self.stride, out)))
        return qconv("conv2", 3, 1, y, after_bn_of="conv1") + shortcut


class ResNet20Q(nn.Module):
    """stem 3x3 (16·expand) -> 3 stages of n pre-activation blocks (16/32/64 ·expand,
    stride 2 at stages 2, 3) -> `bn_final` -> global average pool -> `head`; depth 6n + 2.

    Defaults are con-qat's resnet20q: depth 20, expand 5 (widths 80/160/320). As in
    con-qat, no nonlinearity follows `bn_final`. Names: `stem`,
    `stage{s}_block{b}/{bn1,conv1,bn2,conv2[,shortcut,bn_shortcut]}`, `bn_final`, `head`
    (+ `_fp` BatchNorms when `switchable_bn`).
    """
    num_classes: int
    depth: int = 20
    expand: int = 5
    switchable_bn: bool = True
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: Array, train: bool, low_precision: bool = True,
                 layer_inputs: Optional[dict] = None) -> Array:
        sw = self.sw
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"resnet20q depth must be 6n + 2 (8, 14, 20, ...); got {self.depth}.")
        n = (self.depth - 2) // 6
        x = layers.conv(sw, WIDTHS[0] * self.expand, 3, 1, name="stem", bias=sw.bias(False))(x)
        for s, width in enumerate(WIDTHS):
            for b in range(n):
                name = f"stage{s + 1}_block{b}"
                given = None if layer_inputs is None else layer_inputs.get(name, {})
                x = PreActBlockQ(width * self.expand, 2 if s > 0 and b == 0 else 1, sw,
                                 self.switchable_bn, name=name)(x, train, low_precision, given)
        x = _switch_bn(self, sw, train, "bn_final", self.switchable_bn and not low_precision, x)
        x = jnp.mean(x, axis=(1, 2))
        return layers.head(sw, self.num_classes)(x)

