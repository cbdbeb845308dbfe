"""LeNet-5-style CNN (LeCun et al. 1998) with optional BatchNorm."""
from __future__ import annotations

import flax.linen as nn
import jax

from jaxquant.models import layers
from jaxquant.models.layers import Switches


class LeNet5(nn.Module):
    """conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> head.

    'SAME' convolutions and 2x2 max-pools (padded when odd), so it runs on 8x8
    digits (-> 2x2x16) as well as 28x28 images (-> 7x7x16). Each hidden layer is
    followed by BatchNorm when `batch_norm` and by the nonlinearity.
    Names: `stem`/`bn_stem`, `conv1`/`bn1`, `fc0`/`bn_fc0`, `fc1`/`bn_fc1`, `head`.
    Biases on by default (`use_bias` None -> True).
    """
    num_classes: int
    batch_norm: bool = True
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw

        def block(x, layer, bn):
            x = layer(x)
            if self.batch_norm:
                x = layers.batch_norm(sw, train, bn)(x)
            return layers.activation(sw, x)

        def pool(x):
            return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")

        x = pool(block(x, layers.conv(sw, 6, 5, name="stem", bias=sw.bias(True)), "bn_stem"))
        x = layers.quantize_input(sw, x)
        x = pool(block(x, layers.conv(sw, 16, 5, name="conv1", bias=sw.bias(True)), "bn1"))
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate((120, 84)):
            x = layers.quantize_input(sw, x)
            x = block(x, layers.dense(sw, width, name=f"fc{i}", bias=sw.bias(True)), f"bn_fc{i}")
        return layers.head(sw, self.num_classes)(x)
