"""ResNet-18 (He et al., CVPR'16) with the CIFAR stem used by md-bnn / pmf
(METHODS.md §1) or the ImageNet stem (then it is torchvision's resnet18)."""
from __future__ import annotations

from jaxquant.errors import ConfigError

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.models import layers
from jaxquant.models.layers import Switches
from jaxquant.models.resnet_imagenet import DEPTHS, imagenet_stem, residual_stages

STEMS = ("cifar", "imagenet")


class ResNet18(nn.Module):
    """stem -> 4 stages of 2 basic blocks (64/128/256/512, stride 2 at stages 2-4,
    1x1 conv projection shortcuts) -> global average pool -> head.

    stem 'cifar': 3x3 conv, stride `stem_stride` (1 for 32x32; 2 for 64x64
    TinyImageNet), no max-pool (11.17M params at 10 classes).
    stem 'imagenet': 7x7 conv stride 2 + 3x3 max-pool stride 2: torchvision's
    resnet18 (11.69M params at 1000 classes; same as `ImageNetResNet(depth=18)`).
    Names: `stem`, `bn_stem`, `stage{1..4}_block{0,1}/{conv1,bn1,conv2,bn2,shortcut,bn_shortcut}`, `head`.
    """
    num_classes: int
    stem: str = "cifar"
    stem_stride: int = 1
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        if self.stem == "cifar":
            x = layers.conv(sw, 64, 3, self.stem_stride, name="stem", bias=sw.bias(False))(x)
            x = layers.activation(sw, layers.batch_norm(sw, train, "bn_stem")(x))
        elif self.stem == "imagenet":
            x = imagenet_stem(sw, x, train)
        else:
            raise ConfigError(f"config.model.stem must be one of {', '.join(STEMS)}; got {self.stem!r}.")
        x = residual_stages(sw, x, train, DEPTHS[18][1])
        x = jnp.mean(x, axis=(1, 2))
        return layers.head(sw, self.num_classes)(x)
