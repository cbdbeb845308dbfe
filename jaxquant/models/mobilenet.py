"""MobileNetV2 (Sandler et al., CVPR'18) with torchvision's architecture (`mobilenet_v2`).

3x3/2 conv 32 + BN + ReLU6, 17 inverted-residual blocks in 7 stages (table 2 of
the paper: expansion t, channels c, repeats n, first stride s), 1x1 conv 1280 +
BN + ReLU6, global average pool, fc. Each block: 1x1 expansion conv + BN +
ReLU6 (absent when t = 1), 3x3 depthwise conv (stride s on the first block of a
stage) + BN + ReLU6, 1x1 linear projection + BN, plus the identity when stride
is 1 and the channels match. 3.50M parameters at width 1.0 and 1000 classes.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.models import layers
from jaxquant.models.layers import Switches

# (expansion t, output channels c, repeats n, first stride s), paper table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels `v` to the nearest multiple of `divisor`, never below 90% of v (torchvision)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def relu6(sw: Switches, x: jax.Array) -> jax.Array:
    """min(max(x, 0), 6), or clip(x, 0, 1) when activations are quantized (DoReFa)."""
    return layers.activation(sw, x) if sw.act_bits else jnp.clip(x, 0.0, 6.0)


class InvertedResidual(nn.Module):
    """x -> [expand 1x1 + bn_expand + ReLU6] -> depthwise 3x3 + bn_depthwise + ReLU6
    -> project 1x1 + bn_project (linear) [+ x when stride 1 and channels kept].

    With act_bits, every conv input is q_k(clip(., 0, 1)), the linear
    bottleneck input included; the identity path carries the unquantized x.
    """
    expansion: int
    features: int
    stride: int
    sw: Switches

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        c_in = x.shape[-1]
        hidden = int(round(c_in * self.expansion))
        y = x
        if self.expansion != 1:
            y = layers.conv(sw, hidden, 1, 1, name="expand", bias=sw.bias(False))(
                layers.quantize_input(sw, y))
            y = relu6(sw, layers.batch_norm(sw, train, "bn_expand")(y))
        y = layers.conv(sw, hidden, 3, self.stride, name="depthwise", bias=sw.bias(False),
                        groups=hidden)(layers.quantize_input(sw, y))
        y = relu6(sw, layers.batch_norm(sw, train, "bn_depthwise")(y))
        y = layers.conv(sw, self.features, 1, 1, name="project", bias=sw.bias(False))(
            layers.quantize_input(sw, y))
        y = layers.batch_norm(sw, train, "bn_project")(y)
        if self.stride == 1 and c_in == self.features:
            y = x + y
        return y


class MobileNetV2(nn.Module):
    """torchvision MobileNetV2: stem -> stage{1..7}_block{b} -> conv_last -> pool -> [dropout] -> head.

    width: channel multiplier (1.0; channels rounded by `make_divisible`).
    dropout: rate before `head` when training (torchvision uses 0.2; 0 = off,
    the default, since the trainer passes no 'dropout' rng). Names: `stem`,
    `bn_stem`, `stage{s}_block{b}/{expand,bn_expand,depthwise,bn_depthwise,
    project,bn_project}` (s = row of SETTINGS from 1; no `expand` in stage 1),
    `conv_last`, `bn_last`, `head`.
    """
    num_classes: int
    width: float = 1.0
    dropout: float = 0.0
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        x = layers.conv(sw, make_divisible(STEM_CHANNELS * self.width), 3, 2, name="stem",
                        bias=sw.bias(False))(x)
        x = relu6(sw, layers.batch_norm(sw, train, "bn_stem")(x))
        for s, (t, c, n, first_stride) in enumerate(SETTINGS):
            for b in range(n):
                x = InvertedResidual(t, make_divisible(c * self.width), first_stride if b == 0 else 1,
                                     sw, name=f"stage{s + 1}_block{b}")(x, train)
        last = make_divisible(LAST_CHANNELS * max(1.0, self.width))
        x = layers.conv(sw, last, 1, 1, name="conv_last", bias=sw.bias(False))(layers.quantize_input(sw, x))
        x = relu6(sw, layers.batch_norm(sw, train, "bn_last")(x))
        x = jnp.mean(x, axis=(1, 2))
        if self.dropout:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return layers.head(sw, self.num_classes)(x)
