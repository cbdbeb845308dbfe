"""The byte-level transformer LM: shapes, the causal mask, param names vs the quant regexes,
per-token absmax activations at the projection inputs."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxquant import models
from jaxquant.errors import ConfigError
from jaxquant.masks import param_paths, quant_mask
from jaxquant.models.transformer import QUANT_INCLUDE

TINY = dict(name="transformer", layers=2, width=32, heads=4, seq_len=16, mlp_ratio=2)


def _build(**over):
    model = models.build(ml_collections.ConfigDict({**TINY, **over}), 256)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (3, 16), 0, 256)
    return model, model.init(jax.random.PRNGKey(1), tokens), tokens


def test_logits_are_batch_by_time_by_vocab_and_shorter_inputs_run():
    model, v, tokens = _build()
    assert model.apply(v, tokens).shape == (3, 16, 256)
    assert model.apply(v, tokens[:, :5].astype(jnp.uint8)).shape == (3, 5, 256)
    with pytest.raises(ConfigError, match="config.model.seq_len=16"):
        model.apply(v, jnp.zeros((1, 17), jnp.int32))


def test_param_count_by_hand():
    _, v, _ = _build()
    w, h, layers = 32, 64, 2
    block = 4 * w * w + 2 * w * h + 2 * 2 * w  # q k v o (no bias), up down, ln1 ln2
    expected = 256 * w + 16 * w + layers * block + 2 * w + w * 256 + 256
    assert sum(x.size for x in jax.tree.leaves(v)) == expected


@pytest.mark.parametrize("act_bits", [0, 8])
def test_causal_mask_later_bytes_do_not_change_earlier_logits(act_bits):
    model, v, tokens = _build(absmax_act_bits=act_bits)
    changed = tokens.at[:, 9].set((tokens[:, 9] + 17) % 256)
    a, b = model.apply(v, tokens), model.apply(v, changed)
    np.testing.assert_array_equal(a[:, :9], b[:, :9])  # positions 0..8 never see byte 9
    assert np.all(np.abs(np.asarray(a[:, 9:] - b[:, 9:])).max(axis=(1, 2)) > 1e-4)


def test_quant_regexes_select_exactly_the_projections():
    _, v, _ = _build()
    mask = quant_mask(v["params"], include=list(QUANT_INCLUDE))
    flat = dict(zip(param_paths(v["params"]), jax.tree.leaves(mask)))
    quantized = sorted(p for p, m in flat.items() if m)
    assert quantized == sorted(f"block{i}/{part}/kernel" for i in range(2)
                               for part in ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/up", "mlp/down"))
    assert {"embed/embedding", "pos_embed/embedding", "head/kernel", "head/bias", "ln_f/scale",
            "block0/ln1/scale", "block1/ln2/bias"} <= {p for p, m in flat.items() if not m}


def _dense_inputs(model, v, tokens):
    """{module path: input array} of every Dense layer in one forward pass."""
    seen = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            seen["/".join(context.module.path)] = np.asarray(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        model.apply(v, tokens)
    return seen


def test_absmax_activations_quantize_projection_inputs_per_token_but_not_the_head():
    model, v, tokens = _build(absmax_act_bits=2)  # 2 bits: levels {-2, -1, 0, 1} * max|x| per token
    inputs = _dense_inputs(model, v, tokens)
    assert len(inputs) == 2 * 6 + 1
    for path, x in inputs.items():
        rows = x.reshape(-1, x.shape[-1])
        step = np.abs(rows).max(axis=1, keepdims=True)
        levels = rows / step
        if path == "head":
            assert not np.allclose(levels, np.round(levels), atol=1e-4)
        else:
            np.testing.assert_allclose(levels, np.round(levels), atol=1e-4, err_msg=path)
            assert levels.min() >= -2 - 1e-5 and levels.max() <= 1 + 1e-5


@pytest.mark.parametrize("over", [dict(width=30), dict(layers=0), dict(absmax_act_bits=1),
                                  dict(absmax_act_bits=True), dict(act_bits=4)])
def test_bad_transformer_config_is_a_config_error(over):
    with pytest.raises(ConfigError, match="config.model"):
        _build(**over)
