"""Multi-layer perceptron on flattened images (the md-bnn / pmf MLP family)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxquant.models import layers
from jaxquant.models.layers import Switches


class MLP(nn.Module):
    """x -> flatten -> [dense -> (BN) -> act] per hidden size -> head.

    Layer names: the first hidden layer is `stem` (with `bn_stem`), the next
    ones `dense1`, `dense2`, ... (with `bn1`, `bn2`, ...), the classifier `head`.
    Biases on by default (`use_bias` None -> True).
    """
    num_classes: int
    features: Sequence[int] = (256, 256)
    batch_norm: bool = True
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sw = self.sw
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.features):
            name, bn = ("stem", "bn_stem") if i == 0 else (f"dense{i}", f"bn{i}")
            if i > 0:
                x = layers.quantize_input(sw, x)
            x = layers.dense(sw, width, name=name, bias=sw.bias(True))(x)
            if self.batch_norm:
                x = layers.batch_norm(sw, train, bn)(x)
            x = layers.activation(sw, x)
        return layers.head(sw, self.num_classes)(x)
