"""An LSTM language model over bytes (Hochreiter & Schmidhuber 1997), the model of ProxQuant's
quantized-LSTM experiment (Bai, Wang & Liberty, ICLR'19, following Xu et al., ICLR'18).

x (B, T) integer tokens in [0, vocab) -> logits (B, T, vocab): embedding `embed` (vocab x
`embed`, `embed` = 0 means `hidden`), then `layers` LSTM layers, then the linear `head` on
every step's hidden state. Layer l (input x_t, state h_{t-1}, c_{t-1}, both zero at t = 0):

    z_t = x_t W_ih + b + h_{t-1} W_hh             W_ih (in, 4H), W_hh (H, 4H), b (4H,)
    i_t = sigmoid(z_t[0:H])         f_t = sigmoid(z_t[H:2H])
    g_t = tanh(z_t[2H:3H])          o_t = sigmoid(z_t[3H:4H])      (PyTorch's gate order)
    c_t = f_t * c_t-1 + i_t * g_t,  h_t = o_t * tanh(c_t)

x_t W_ih + b is one matmul over all steps; the recurrence runs in `jax.lax.scan` over time,
so the model is causal (logits at t see bytes <= t only). Every window starts from a zero
state (the byte windows of `data/text.py` are random, not consecutive BPTT segments).

Param paths (for the `config.quant` regexes): `embed/embedding`, `lstm{l}/ih/kernel`,
`lstm{l}/ih/bias` (the gates' one bias; PyTorch's b_ih + b_hh), `lstm{l}/hh/kernel`,
`head/kernel`, `head/bias` (`head_bias`). `QUANT_INCLUDE` names the LSTM's weight matrices
W_ih, W_hh: what ProxQuant quantizes ("we quantize the weight matrices of the LSTM").
Embedding, biases and head stay full precision by default; `QUANT_INCLUDE_ALL` adds the
embedding and head matrices (Xu et al. also quantize those; the ProxQuant paper does not say,
and its LSTM code was never released), selectable with `config.quant.include`.

Sizes. Paper (ProxQuant following Xu et al. 2018's setup, word-level Penn Treebank, 10k
words): one LSTM layer of 300 hidden units (the default here); Xu et al.'s embedding size,
unroll length and dropout could not be checked offline. Here the vocabulary is 256 bytes and
the sizes are config keys (`layers`, `hidden`, `embed`); the CPU configs
(configs/lstm_fortunes_*.py) use one layer of 128. No dropout: the trainer has no dropout rng.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant.errors import ConfigError
from jaxquant.models import layers
from jaxquant.models.layers import Switches

Array = jax.Array

# ProxQuant's quantized weights: the LSTM's input-to-hidden and hidden-to-hidden matrices.
QUANT_INCLUDE = (r"lstm\d+/(ih|hh)/kernel",)
# ... and the embedding and output matrices too (Xu et al. 2018's fully quantized LM).
QUANT_INCLUDE_ALL = QUANT_INCLUDE + (r"embed/embedding", r"head/kernel")


def lstm_step(w_hh: Array, carry: tuple[Array, Array], zx: Array) -> tuple[tuple[Array, Array], Array]:
    """One LSTM step: carry (h, c) each (B, H), zx = x_t W_ih + b (B, 4H) -> ((h_t, c_t), h_t)."""
    h, c = carry
    i, f, g, o = jnp.split(zx + h @ w_hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


class _Kernel(nn.Module):
    """A bare weight matrix `kernel` (used inside `jax.lax.scan`, where modules cannot run)."""
    shape: Sequence[int]
    init: Callable

    @nn.compact
    def __call__(self) -> Array:
        return self.param("kernel", self.init, tuple(self.shape))


class LSTMLayer(nn.Module):
    """One LSTM layer over a whole sequence: xs (B, T, in) -> hs (B, T, hidden)."""
    hidden: int
    sw: Switches

    @nn.compact
    def __call__(self, xs: Array) -> Array:
        h4 = 4 * self.hidden
        zx = layers.dense(self.sw, h4, name="ih", bias=True)(xs)            # (B, T, 4H)
        w_hh = _Kernel((self.hidden, h4), layers.kernel_init(self.sw), name="hh")().astype(zx.dtype)
        zero = jnp.zeros((xs.shape[0], self.hidden), zx.dtype)
        _, hs = jax.lax.scan(lambda carry, z: lstm_step(w_hh, carry, z), (zero, zero),
                             jnp.swapaxes(zx, 0, 1))                      # over time
        return jnp.swapaxes(hs, 0, 1)


class LSTMLM(nn.Module):
    """Embedding -> `layers` LSTM layers -> head (see the module docstring); vocab = num_classes."""
    vocab: int = 256
    layers: int = 1
    hidden: int = 300
    embed: int = 0  # 0: the embedding is `hidden` wide
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        del train  # no dropout, no batch statistics
        tokens = x.astype(jnp.int32)
        if tokens.ndim != 2:
            raise ConfigError(f"the LSTM takes tokens (batch, T); got shape {tuple(x.shape)}. "
                              f"Use it with a text dataset (config.dataset.name='fortunes' or "
                              f"'text_file:<path>').")
        h = nn.Embed(self.vocab, self.embed or self.hidden, name="embed")(tokens)
        for i in range(self.layers):
            h = LSTMLayer(self.hidden, self.sw, name=f"lstm{i}")(h)
        return layers.head(self.sw, self.vocab)(h)
