"""VGG-16 with BatchNorm, the CIFAR variant of md-bnn / pmf (METHODS.md §1)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.models import layers
from jaxquant.models.layers import Switches

CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """13 x [3x3 conv -> BN -> act] with 2x2 max-pools (cfg 64,64,M,128,128,M,
    256x3,M,512x3,M,512x3,M) -> global average pool (= flatten on CIFAR's 1x1
    map) -> fc 512 -> BN -> act -> fc 512 -> BN -> act -> head; no dropout.

    The first conv has stride `stem_stride` (pmf uses 2 for 64x64 inputs);
    max-pools are 'SAME'-padded so small inputs (8x8 digits) also work.
    Names: `stem`/`bn_stem`, `conv1..conv12`/`bn1..bn12`, `fc0`/`bn_fc0`,
    `fc1`/`bn_fc1`, `head`.

    Biases: `head` has one (`head_bias`); the 13 convs and fc0/fc1 have none by
    default, since a BatchNorm follows each. md-bnn's and pmf's VGG (`nn.Conv2d`,
    `nn.Linear` / `SConv2d`, `SLinear` with PyTorch's default bias=True) carry
    them all, quantized like the kernels: `use_bias=True` (`config.model.use_bias`)
    adds them, `stem/bias`, `conv<i>/bias`, `fc0/bias`, `fc1/bias` (the MD/PMF
    VGG table configs set it).
    """
    num_classes: int
    stem_stride: int = 1
    fc_features: int = 512
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        i = 0
        for c in CFG16:
            if c == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
                continue
            name, bn = ("stem", "bn_stem") if i == 0 else (f"conv{i}", f"bn{i}")
            if i > 0:
                x = layers.quantize_input(sw, x)
            x = layers.conv(sw, c, 3, self.stem_stride if i == 0 else 1, name=name,
                            bias=sw.bias(False))(x)
            x = layers.activation(sw, layers.batch_norm(sw, train, bn)(x))
            i += 1
        x = jnp.mean(x, axis=(1, 2))
        for j in range(2):
            x = layers.quantize_input(sw, x)
            x = layers.dense(sw, self.fc_features, name=f"fc{j}", bias=sw.bias(False))(x)
            x = layers.activation(sw, layers.batch_norm(sw, train, f"bn_fc{j}")(x))
        return layers.head(sw, self.num_classes)(x)
