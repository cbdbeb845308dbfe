"""The byte-level LSTM LM (ProxQuant's quantized LSTM): the recurrence against a hand-unrolled
numpy reference, causality, param names vs the quant regexes, the alternating-quantization
STE baseline (proxquant lazy multibit), and a few trainer steps of both methods."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxquant import methods, models, train
from jaxquant.config import base_config
from jaxquant.errors import ConfigError
from jaxquant.masks import param_paths, quant_mask
from jaxquant.methods.base import Context
from jaxquant.models.lstm import QUANT_INCLUDE, QUANT_INCLUDE_ALL

TINY = dict(name="lstm", layers=1, hidden=3, embed=2)


def _build(**over):
    model = models.build(ml_collections.ConfigDict({**TINY, **over}), 256)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 5), 0, 256)
    return model, model.init(jax.random.PRNGKey(1), tokens), tokens


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm_lm(p, tokens):
    """Step-by-step reference: the gate equations written out, one time step at a time."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    x_all = p["embed"]["embedding"][np.asarray(tokens)]            # (B, T, E)
    l = 0
    while f"lstm{l}" in p:
        w_ih, b, w_hh = p[f"lstm{l}"]["ih"]["kernel"], p[f"lstm{l}"]["ih"]["bias"], p[f"lstm{l}"]["hh"]["kernel"]
        n = w_hh.shape[0]
        h, c, out = np.zeros((x_all.shape[0], n)), np.zeros((x_all.shape[0], n)), []
        for t in range(x_all.shape[1]):
            z = x_all[:, t] @ w_ih + b + h @ w_hh
            i = _sigmoid(z[:, 0:n])
            f = _sigmoid(z[:, n:2 * n])
            g = np.tanh(z[:, 2 * n:3 * n])
            o = _sigmoid(z[:, 3 * n:4 * n])
            c = f * c + i * g
            h = o * np.tanh(c)
            out.append(h)
        x_all, l = np.stack(out, axis=1), l + 1
    return x_all @ p["head"]["kernel"] + p["head"]["bias"]


@pytest.mark.parametrize("layers", [1, 2])
def test_recurrence_matches_a_hand_unrolled_numpy_lstm(layers):
    model, v, tokens = _build(layers=layers)
    # non-trivial biases so every gate term matters
    v["params"]["lstm0"]["ih"]["bias"] = jnp.linspace(-1.0, 1.0, 12)
    v["params"]["head"]["bias"] = jnp.linspace(-0.5, 0.5, 256)
    np.testing.assert_allclose(model.apply(v, tokens), _numpy_lstm_lm(v["params"], tokens),
                               rtol=1e-5, atol=1e-5)


def test_one_step_by_hand():
    # H = 1, E = 1: z = x w_ih + b + h w_hh; from h = c = 0 at t = 0
    p = {"embed": {"embedding": jnp.zeros((256, 1)).at[7, 0].set(1.0)},
         "lstm0": {"ih": {"kernel": jnp.array([[1.0, 2.0, 3.0, 4.0]]), "bias": jnp.zeros(4)},
                   "hh": {"kernel": jnp.array([[0.5, 0.5, 0.5, 0.5]])}},
         "head": {"kernel": jnp.ones((1, 256)), "bias": jnp.zeros(256)}}
    model = models.build(ml_collections.ConfigDict(dict(name="lstm", hidden=1, embed=1)), 256)
    out = model.apply({"params": p}, jnp.array([[7, 7]]))
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    c1 = s(1.0) * math.tanh(3.0)                 # f * 0 + i * g
    h1 = s(4.0) * math.tanh(c1)
    z2 = [1.0 + 0.5 * h1, 2.0 + 0.5 * h1, 3.0 + 0.5 * h1, 4.0 + 0.5 * h1]
    c2 = s(z2[1]) * c1 + s(z2[0]) * math.tanh(z2[2])
    h2 = s(z2[3]) * math.tanh(c2)
    np.testing.assert_allclose(out[0, :, 0], [h1, h2], rtol=1e-6)


def test_later_bytes_do_not_change_earlier_logits():
    model, v, tokens = _build(hidden=8, embed=4)
    changed = tokens.at[:, 3].set((tokens[:, 3] + 17) % 256)
    a, b = model.apply(v, tokens), model.apply(v, changed)
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert np.all(np.abs(np.asarray(a[:, 3:] - b[:, 3:])).max(axis=(1, 2)) > 1e-6)


def test_shapes_param_count_and_quant_regexes():
    model, v, tokens = _build(layers=2, hidden=4, embed=3)
    assert model.apply(v, tokens).shape == (2, 5, 256)
    assert model.apply(v, tokens[:, :2].astype(jnp.uint8)).shape == (2, 2, 256)  # any length
    h, e = 4, 3
    expected = 256 * e + (e * 4 * h + 4 * h + h * 4 * h) + (h * 4 * h + 4 * h + h * 4 * h) + h * 256 + 256
    assert sum(x.size for x in jax.tree.leaves(v)) == expected
    flat = lambda include: {p for p, m in zip(param_paths(v["params"]),  # noqa: E731
                                              jax.tree.leaves(quant_mask(v["params"], include=list(include)))) if m}
    assert flat(QUANT_INCLUDE) == {f"lstm{i}/{w}/kernel" for i in (0, 1) for w in ("ih", "hh")}
    assert flat(QUANT_INCLUDE_ALL) == flat(QUANT_INCLUDE) | {"embed/embedding", "head/kernel"}


@pytest.mark.parametrize("over", [dict(hidden=0), dict(layers=0), dict(embed=-1), dict(act_bits=2)])
def test_bad_lstm_config_is_a_config_error(over):
    with pytest.raises(ConfigError, match="config.model"):
        _build(**over)


# --- the alternating-quantization STE baseline: proxquant projection_mode='lazy' -------------

KERNEL_ONLY = lambda p: quant_mask(p, include=[".*kernel"], strict=False)  # noqa: E731


def _method(**m):
    cfg = ml_collections.ConfigDict({"method": dict(name="proxquant", kind="multibit", freeze_epoch=0, **m)})
    return methods.build("proxquant", Context(config=cfg, optimizer=optax.sgd(0.1),
                                              learning_rate=lambda t: 0.1, mask=KERNEL_ONLY,
                                              steps_per_epoch=2))


def test_lazy_multibit_forward_is_the_alternating_quantizer_by_hand():
    w = jnp.array([[0.5], [0.1], [0.1], [0.1]])  # one output unit: a row of 4 weights
    params = {"dense": {"kernel": w, "bias": jnp.array([3.0])}}
    # 1 bit: mean|w| sign(w) = 0.2 everywhere
    np.testing.assert_allclose(_method(bits=1, projection_mode="lazy").forward(params, 0)["dense"]["kernel"],
                               [[0.2]] * 4, rtol=1e-6)
    # 2 bits: greedy 0.2 + 0.15 sign(r), then least squares on the codes [1, 1], [1, -1] x3:
    # alpha = (0.2, 0.15) -> B alpha = [0.35, 0.05, 0.05, 0.05]; refit: (a1 + a2) = 0.5,
    # (a1 - a2) = 0.1 -> alpha = (0.3, 0.2): exact [0.5, 0.1, 0.1, 0.1]
    m2 = _method(bits=2, projection_mode="lazy")
    np.testing.assert_allclose(m2.forward(params, 0)["dense"]["kernel"], w, rtol=1e-5)
    np.testing.assert_allclose(_method(bits=2, projection_mode="lazy", rounds=1)
                               .forward(params, 0)["dense"]["kernel"], [[0.35], [0.05], [0.05], [0.05]],
                               rtol=1e-5)
    np.testing.assert_array_equal(m2.forward(params, 0)["dense"]["bias"], [3.0])  # unmasked: as is


def test_lazy_multibit_gradient_is_straight_through_and_latents_are_clipped():
    m = _method(bits=1, projection_mode="lazy")
    w = jnp.array([[0.5], [0.1], [-0.3], [0.9]])
    params = {"dense": {"kernel": w, "bias": jnp.array([0.0])}}
    c = jnp.array([[1.0], [-2.0], [3.0], [20.0]])
    # loss = sum(c * q(w)): identity STE -> d loss / d w = c (not the 1-bit quantizer's 0 gradient)
    g = jax.grad(lambda p: jnp.sum(c * m.forward(p, 0)["dense"]["kernel"]))(params)
    np.testing.assert_allclose(g["dense"]["kernel"], c)
    upd, _ = m.tx.update(g, m.tx.init(params), params)
    new = optax.apply_updates(params, upd)["dense"]["kernel"]
    # sgd 0.1: w - 0.1 c = [0.4, 0.3, -0.6, -1.1] -> clipped to [-1, 1]
    np.testing.assert_allclose(new, [[0.4], [0.3], [-0.6], [-1.0]], rtol=1e-6)
    np.testing.assert_allclose(m.project({"dense": {"kernel": new, "bias": jnp.zeros(1)}})["dense"]["kernel"],
                               [[0.575], [0.575], [-0.575], [-0.575]], rtol=1e-6)


def test_prox_multibit_forward_is_the_latent_and_its_step_pulls_toward_the_quantizer():
    m = _method(bits=1, reg_rate=10.0)  # s = lr * reg_rate * epoch = 0.1 * 10 * epoch
    w = jnp.array([[0.5], [0.1], [-0.3], [0.9]])
    params = {"dense": {"kernel": w, "bias": jnp.array([0.0])}}
    np.testing.assert_array_equal(m.forward(params, 0)["dense"]["kernel"], w)
    zero = jax.tree.map(jnp.zeros_like, params)
    state = m.tx.init(params)
    p = params
    for _ in range(3):  # epochs 0, 0, 1: s = 0, 0, 1
        upd, state = m.tx.update(zero, state, p)
        p = optax.apply_updates(p, upd)
    # (w + 1 * q(w)) / 2, q = 0.45 sign(w)
    np.testing.assert_allclose(p["dense"]["kernel"], (w + 0.45 * jnp.sign(w)) / 2, rtol=1e-6)


# --- a few trainer steps on a tiny LSTM ----------------------------------------------------

def _tiny_config(tmp_path, **method):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"the quick brown fox jumps over the lazy dog. " * 40)
    c = base_config()
    c.dataset.update(name=f"text_file:{corpus}", seq_len=16)
    c.model = ml_collections.ConfigDict(dict(name="lstm", hidden=8, embed=8))
    c.quant.update(include=list(QUANT_INCLUDE))
    c.method = ml_collections.ConfigDict(dict(name="proxquant", kind="multibit", **method))
    c.optimizer.update(name="adam", lr=1e-2)
    c.train.update(batch_size=16, steps=6)
    return c


@pytest.mark.parametrize("mode", ["prox", "lazy"])
def test_proxquant_multibit_and_the_ste_baseline_train_a_tiny_lstm(tmp_path, mode):
    exp = train.build_experiment(_tiny_config(tmp_path, bits=2, projection_mode=mode, reg_rate=5.0,
                                              freeze_epoch=0))
    step = jax.jit(train.make_train_step(exp))
    state = train.init_state(exp)
    x, y = exp.dataset.train.images[:16], exp.dataset.train.labels[:16]
    losses = []
    for _ in range(6):
        state, metrics = step(state, x, y)
        losses.append(float(metrics["train_loss"]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    latent = jax.device_get(state["latent"])
    for name in ("ih", "hh"):
        k = latent["lstm0"][name]["kernel"]
        assert np.abs(k).max() <= 1.0 and not np.allclose(k, jax.device_get(exp.params)["lstm0"][name]["kernel"])
        q = np.asarray(exp.method.project(latent)["lstm0"][name]["kernel"])
        assert max(len(np.unique(q[:, j])) for j in range(q.shape[1])) <= 4  # 2 bits per output unit
    assert np.abs(latent["embed"]["embedding"]).max() > 0  # full precision, trained, not projected
    np.testing.assert_array_equal(exp.method.project(latent)["head"]["kernel"], latent["head"]["kernel"])


def test_compare_presets_run_both_methods_on_one_homotopy_with_bits_by_override():
    from jaxquant import compare
    base = base_config()
    budget = compare.Budget(total_steps=300, steps_per_epoch=1150, lr=3e-3)  # < 1 pass: pseudo-epochs
    got = {}
    for spec in compare.parse_specs("proxquant_multibit:bits=3,lazy_multibit:bits=1"):
        got[spec.name] = compare.method_config(base, spec, budget, "/unused").method.to_dict()
    # 15 pseudo-epochs of 20 steps, freeze at 10; reg_rate = 15.6 / (3e-3 * 20 * 10^2) = 2.6
    common = dict(name="proxquant", kind="multibit", epoch_steps=20, freeze_epoch=10, reg_rate=2.6,
                  reset_optimizer_every_epoch=False)
    assert got["proxquant_multibit"] == dict(common, projection_mode="prox", bits=3)
    assert got["lazy_multibit"] == dict(common, projection_mode="lazy", bits=1)
    # the single-run configs carry the same schedule (their budget is the comparison's)
    from conftest import load_config
    for name, mode in (("lstm_fortunes_proxquant", "prox"), ("lstm_fortunes_ste_multibit", "lazy")):
        c = load_config(name)
        assert c.train.steps == 300 and c.optimizer.lr == 3e-3 and c.model.name == "lstm"
        assert dict(c.method) == dict(common, projection_mode=mode, bits=2)
