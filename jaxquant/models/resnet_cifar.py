"""CIFAR ResNet 6n+2 (He et al., CVPR'16, section 4.2): ResNet-20/32/44/56/110."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.models import layers
from jaxquant.models.layers import BasicBlock, Switches

WIDTHS = (16, 32, 64)


class CifarResNet(nn.Module):
    """3x3 conv 16 -> 3 stages of n basic blocks (16/32/64, stride 2 at stages 2, 3)
    -> global average pool -> head; depth = 6n + 2.

    shortcut: 'A' (subsample + zero channel padding, no params; ResNet-20 has
    0.27M params) or 'B' (1x1 conv + BN, named `shortcut` / `bn_shortcut`).
    Names: `stem`, `bn_stem`, `stage{1..3}_block{0..n-1}/{conv1,bn1,conv2,bn2}`, `head`.
    """
    num_classes: int
    depth: int = 20
    shortcut: str = "A"
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110); got {self.depth}.")
        n = (self.depth - 2) // 6
        x = layers.conv(sw, WIDTHS[0], 3, 1, name="stem", bias=sw.bias(False))(x)
        x = layers.activation(sw, layers.batch_norm(sw, train, "bn_stem")(x))
        for s, width in enumerate(WIDTHS):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                x = BasicBlock(width, stride, self.shortcut, sw, name=f"stage{s + 1}_block{b}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return layers.head(sw, self.num_classes)(x)
