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

`weight_scale` (`config.model.weight_scale`): 'none' (default) or 'learned'. The mirror-descent,
PMF, ProxQuant and BinaryConnect methods quantize to the unscaled levels {-1, 0, 1} (or
{-1, 1}), but a pre-LN transformer's projections feed the residual stream with no
normalisation after them, so the size of their weights matters. With 'learned' every
projection is y = s (x K): the kernel K (the quantized latent, `.../kernel`) lives in units of
the levels, initialised U(-1, 1) (inside the [-1, 1] box BinaryConnect / ProxQuant clip to; the
ternary thresholds +-1/2 round half of it to 0), and s is a learned full-precision scalar per
projection (`.../weight_scale`, outside `QUANT_INCLUDE`), initialised to sqrt(3 / fan_in) so
that s K starts with variance 1 / fan_in, Flax's lecun-normal variance. s is applied after the
(quantized) matmul, as a per-tensor scale; the export stores it raw next to the 2-bit kernel.
BitNet b1.58 needs none (its absmean quantizer carries the scale); with 'learned' it is a
redundant extra scalar.
"""
from __future__ import annotations

import math

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
WEIGHT_SCALES = ("none", "learned")


def _projection_input(bits: int, x: Array) -> Array:
    """x, or its per-token absmax `bits`-bit quantization with identity STE (bits > 0)."""
    return quantizers.absmax_activation(x, bits, ste=True) if bits else x


def _level_uniform(key, shape, dtype=jnp.float32):
    """U(-1, 1): a kernel in units of the quantization levels."""
    return jax.random.uniform(key, shape, dtype, -1.0, 1.0)


class ScaledDense(nn.Module):
    """y = s (x K): K (fan_in, features) ~ U(-1, 1), scalar s `weight_scale` = sqrt(3 / fan_in) at init."""
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", _level_uniform, (fan_in, self.features))
        scale = self.param("weight_scale", nn.initializers.constant(math.sqrt(3.0 / fan_in)), ())
        return (x @ kernel.astype(x.dtype)) * scale.astype(x.dtype)


def _projection(sw: Switches, weight_scale: str, features: int, name: str) -> nn.Module:
    """A projection (no bias unless `use_bias`): Dense, or `ScaledDense` with weight_scale='learned'."""
    if weight_scale == "learned":
        if sw.bias(False):
            raise ConfigError("config.model.weight_scale='learned' takes projections without "
                              "biases; leave config.model.use_bias unset (None) or False.")
        return ScaledDense(features, name=name)
    return layers.dense(sw, features, name=name, bias=sw.bias(False))


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t attends to positions <= t only.

    softmax(q k^T / sqrt(d_head) + M) v, M_ts = 0 if s <= t else -inf, per head;
    q, k, v, o are Dense layers width -> width (kernels (width, width)).
    """
    width: int
    heads: int
    act_bits: int
    sw: Switches
    weight_scale: str = "none"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, t, _ = x.shape
        d = self.width // self.heads
        xq = _projection_input(self.act_bits, x)

        def split(name):
            y = _projection(self.sw, self.weight_scale, self.width, name)(xq)
            return y.reshape(b, t, self.heads, d)

        q, k, v = split("q"), split("k"), split("v")
        scores = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(jnp.asarray(d, x.dtype))
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        y = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, self.width)
        y = _projection_input(self.act_bits, y)
        return _projection(self.sw, self.weight_scale, self.width, "o")(y)


class MLPBlock(nn.Module):
    """down(gelu(up x)), up: width -> hidden, down: hidden -> width."""
    width: int
    hidden: int
    act_bits: int
    sw: Switches
    weight_scale: str = "none"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = _projection(self.sw, self.weight_scale, self.hidden, "up")(
            _projection_input(self.act_bits, x))
        h = _projection_input(self.act_bits, nn.gelu(h))
        return _projection(self.sw, self.weight_scale, self.width, "down")(h)


class Block(nn.Module):
    """Pre-LN block: h + attn(ln1 h), then + mlp(ln2 h)."""
    width: int
    heads: int
    hidden: int
    act_bits: int
    sw: Switches
    weight_scale: str = "none"

    @nn.compact
    def __call__(self, h: Array) -> Array:
        h = h + CausalSelfAttention(self.width, self.heads, self.act_bits, self.sw,
                                    self.weight_scale, name="attn")(nn.LayerNorm(name="ln1")(h))
        return h + MLPBlock(self.width, self.hidden, self.act_bits, self.sw, self.weight_scale,
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
    weight_scale: str = "none"
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
                      self.sw, self.weight_scale, name=f"block{i}")(h)
        return layers.head(self.sw, self.vocab)(nn.LayerNorm(name="ln_f")(h))
