"""ImageNet ResNet-18/34/50/101/152 (He et al., CVPR'16) with torchvision's architecture.

torchvision's `resnet{18,34,50,101,152}`: 7x7/2 conv 64 + BN + ReLU, 3x3/2
max-pool, four stages (64/128/256/512 base widths, stride 2 at stages 2-4), basic
blocks (18, 34) or bottleneck blocks with expansion 4 (50+) whose stride sits
on the 3x3 conv ("ResNet v1.5"), 1x1 conv + BN projection shortcuts wherever
the shape changes, global average pool, fc. Parameter counts at 1000 classes:
11.69M, 21.80M, 25.56M, 44.55M, 60.19M. `jaxquant.convert` imports
torchvision's pretrained weights into these modules.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.models import layers
from jaxquant.models.layers import BasicBlock, Switches

WIDTHS = (64, 128, 256, 512)
EXPANSION = 4  # bottleneck output width / base width
# depth -> (bottleneck?, blocks per stage)
DEPTHS = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3)),
          101: (True, (3, 4, 23, 3)), 152: (True, (3, 8, 36, 3))}


class Bottleneck(nn.Module):
    """Bottleneck block, stride on the 3x3 conv (torchvision v1.5):
    act(bn3(conv3(act(bn2(conv2(act(bn1(conv1 x))))))) + shortcut(x)).

    conv1 1x1 (width), conv2 3x3 stride `stride` (width), conv3 1x1 (4 width);
    the shortcut is the identity when the shape is kept, else 1x1 conv
    `shortcut` (stride `stride`) + `bn_shortcut`. With act_bits, conv1 and the
    projection see the quantized input; the identity path carries x.
    """
    width: int
    stride: int
    sw: Switches

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        out = self.width * EXPANSION
        xq = layers.quantize_input(sw, x)
        y = layers.conv(sw, self.width, 1, 1, name="conv1", bias=sw.bias(False))(xq)
        y = layers.activation(sw, layers.batch_norm(sw, train, "bn1")(y))
        y = layers.conv(sw, self.width, 3, self.stride, name="conv2", bias=sw.bias(False))(
            layers.quantize_input(sw, y))
        y = layers.activation(sw, layers.batch_norm(sw, train, "bn2")(y))
        y = layers.conv(sw, out, 1, 1, name="conv3", bias=sw.bias(False))(layers.quantize_input(sw, y))
        y = layers.batch_norm(sw, train, "bn3")(y)
        if self.stride == 1 and x.shape[-1] == out:
            s = x
        else:
            s = layers.conv(sw, out, 1, self.stride, name="shortcut", bias=sw.bias(False))(xq)
            s = layers.batch_norm(sw, train, "bn_shortcut")(s)
        return layers.activation(sw, y + s)


def imagenet_stem(sw: Switches, x: jax.Array, train: bool) -> jax.Array:
    """7x7/2 conv `stem` (64) + `bn_stem` + act + 3x3/2 max-pool (padding 1), as torchvision.

    Call inside a compact module: the layers become its children.
    """
    x = layers.conv(sw, WIDTHS[0], 7, 2, name="stem", bias=sw.bias(False))(x)
    x = layers.activation(sw, layers.batch_norm(sw, train, "bn_stem")(x))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def residual_stages(sw: Switches, x: jax.Array, train: bool, blocks: tuple[int, ...],
                    bottleneck: bool = False) -> jax.Array:
    """Stages `stage{s}_block{b}` of `blocks[s-1]` blocks (widths 64/128/256/512, stride 2
    on the first block of stages 2+, projection shortcuts); call inside a compact module."""
    make: Callable[[int, int, str], nn.Module]
    if bottleneck:
        make = lambda width, stride, name: Bottleneck(width, stride, sw, name=name)  # noqa: E731
    else:
        make = lambda width, stride, name: BasicBlock(width, stride, "B", sw, name=name)  # noqa: E731
    for s, (width, n) in enumerate(zip(WIDTHS, blocks)):
        for b in range(n):
            stride = 2 if s > 0 and b == 0 else 1
            x = make(width, stride, f"stage{s + 1}_block{b}")(x, train)
    return x


class ImageNetResNet(nn.Module):
    """torchvision ResNet-`depth` (18, 34, 50, 101, 152): stem -> 4 stages -> average pool -> head.

    Names: `stem`, `bn_stem`, `stage{1..4}_block{b}/{conv1,bn1,conv2,bn2[,conv3,bn3],
    shortcut,bn_shortcut}`, `head`. Input NHWC, any size >= 32 (224 for ImageNet).
    """
    num_classes: int
    depth: int = 50
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.depth not in DEPTHS:
            raise ValueError(f"ImageNet ResNet depth must be one of {sorted(DEPTHS)}; got {self.depth}.")
        bottleneck, blocks = DEPTHS[self.depth]
        x = imagenet_stem(self.sw, x, train)
        x = residual_stages(self.sw, x, train, blocks, bottleneck)
        x = jnp.mean(x, axis=(1, 2))
        return layers.head(self.sw, self.num_classes)(x)
