"""A small decoder-only transformer language model over bytes (GPT-2-style pre-LN blocks,
Radford et al. 2019), with BitNet's optional per-token absmax activations (Wang et al. 2023).

x (B, T) integer tokens in [0, vocab) -> logits (B, T, vocab). Token embedding `embed`
plus learned positions `pos_embed` (T <= seq_len); then `layers` blocks
    h = h + o(attn(q(LN1 h), k(LN1 h), v(LN1 h)))          causal, `heads` heads
    h = h + down(gelu(up(LN2 h)))                             hidden width mlp_ratio * width
and a final LayerNorm `ln_f` and the linear `head`. With `absmax_act_bits` = k (BitNet
b1.58: 8) the input of every projection q, k, v, o, up, down is replaced by its per-token
absmax k-bit quantization (`quantizers.absmax_activation`, identity STE); the head's is not.

Param paths (for the `config.quant` regexes, `QUANT_INCLUDE`): `block{i}/attn/{q,k,v,o}/kernel`,
`block{i}/mlp/{up,down}/kernel` (quantized by the LM configs), `embed/embedding`,
`pos_embed/embedding`, `block{i}/ln{1,2}/{scale,bias}`, `ln_f/*`, `head/{kernel,bias}`
(full precision). Projection biases follow `use_bias` (None -> off, as BitNet b1.58 and
LLaMA have none); the head's follows `head_bias`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxquant import quantizers
from jaxquant.errors import ConfigError
from jaxquant.models import layers
from jaxquant.models.layers import Switches

Array = jax.Array

# The projections an LM config quantizes (config.quant.include); embeddings, norms and head stay FP.
QUANT_INCLUDE = (r"block\d+/attn/(q|k|v|o)/kernel", r"block\d+/mlp/(up|down)/kernel")


def _projection_input(bits: int, x: Array) -> Array:
    """x, or its per-token absmax `bits`-bit quantization with identity STE (bits > 0)."""
    return quantizers.absmax_activation(x, bits, ste=True) if bits else x


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t attends to positions <= t only.

    softmax(q k^T / sqrt(d_head) + M) v, M_ts = 0 if s <= t else -inf, per head;
    q, k, v, o are Dense layers width -> width (kernels (width, width)).
    """
    width: int
    heads: int
    act_bits: int
    sw: Switches

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, t, _ = x.shape
        d = self.width // self.heads
        xq = _projection_input(self.act_bits, x)

        def split(name):
            y = layers.dense(self.sw, self.width, name=name, bias=self.sw.bias(False))(xq)
            return y.reshape(b, t, self.heads, d)

        q, k, v = split("q"), split("k"), split("v")
        scores = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(jnp.asarray(d, x.dtype))
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        y = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, self.width)
        y = _projection_input(self.act_bits, y)
        return layers.dense(self.sw, self.width, name="o", bias=self.sw.bias(False))(y)


class MLPBlock(nn.Module):
    """down(gelu(up x)), up: width -> hidden, down: hidden -> width."""
    width: int
    hidden: int
    act_bits: int
    sw: Switches

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = layers.dense(self.sw, self.hidden, name="up", bias=self.sw.bias(False))(
            _projection_input(self.act_bits, x))
        h = _projection_input(self.act_bits, nn.gelu(h))
        return layers.dense(self.sw, self.width, name="down", bias=self.sw.bias(False))(h)


class Block(nn.Module):
    """Pre-LN block: h + attn(ln1 h), then + mlp(ln2 h)."""
    width: int
    heads: int
    hidden: int
    act_bits: int
    sw: Switches

    @nn.compact
    def __call__(self, h: Array) -> Array:
        h = h + CausalSelfAttention(self.width, self.heads, self.act_bits, self.sw,
                                    name="attn")(nn.LayerNorm(name="ln1")(h))
        return h + MLPBlock(self.width, self.hidden, self.act_bits, self.sw,
                            name="mlp")(nn.LayerNorm(name="ln2")(h))


class TransformerLM(nn.Module):
    """Decoder-only pre-LN transformer LM (see the module docstring); vocab = num_classes."""
    vocab: int = 256
    layers: int = 4
    width: int = 256
    heads: int = 4
    seq_len: int = 256
    mlp_ratio: int = 4
    absmax_act_bits: int = 0
    sw: Switches = Switches()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        del train  # no dropout, no batch statistics
        tokens = x.astype(jnp.int32)
        if tokens.ndim != 2 or tokens.shape[1] > self.seq_len:
            raise ConfigError(f"the transformer takes tokens (batch, T) with T <= config.model.seq_len="
                              f"{self.seq_len}; got shape {tuple(x.shape)}. Set config.model.seq_len "
                              f">= config.dataset.seq_len.")
        t = tokens.shape[1]
        h = nn.Embed(self.vocab, self.width, name="embed")(tokens)
        h = h + nn.Embed(self.seq_len, self.width, name="pos_embed")(jnp.arange(t))[None]
        for i in range(self.layers):
            h = Block(self.width, self.heads, self.mlp_ratio * self.width, self.absmax_act_bits,
                      self.sw, name=f"block{i}")(h)
        return layers.head(self.sw, self.vocab)(nn.LayerNorm(name="ln_f")(h))
