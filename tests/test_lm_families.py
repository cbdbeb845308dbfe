"""The quantization families on the byte-level transformer LM: the learned per-projection
scale, random training windows, every family through the trainer, the 2-bit export and
its exact bits per byte, and `jaxquant.generate`."""
import json
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import REPO
from jaxquant import checkpoints, compare, evaluate, export, generate, models, train
from jaxquant.config import base_config
from jaxquant.errors import ConfigError
from jaxquant.masks import param_paths, quant_mask
from jaxquant.models.transformer import QUANT_INCLUDE

TEXT = (b"The quick brown fox jumps over the lazy dog.\n%\nA stitch in time saves nine.\n%\n"
        b"Do not count your chickens before they hatch.\n%\n") * 30  # 4,530 bytes


def tiny_lm_config(tmp_path, **train_kw):
    """1 layer, width 16, windows of 16 bytes of a small English text, learned weight scale."""
    path = tmp_path / "corpus.txt"
    path.write_bytes(TEXT)
    c = base_config()
    c.dataset.update(name=f"text_file:{path}", seq_len=16)
    c.model = ml_collections.ConfigDict(dict(name="transformer", layers=1, width=16, heads=2,
                                             seq_len=16, mlp_ratio=2, weight_scale="learned"))
    c.quant.update(include=list(QUANT_INCLUDE))
    c.optimizer.update(name="adam", lr=3e-3)
    c.train.update(**{**dict(batch_size=8, steps=4, eval_every_steps=4, log_every_steps=2,
                             eval_batch_size=64), **train_kw})
    return c


# --------------------------------------------------------------------- the learned scale

def test_learned_weight_scale_is_a_scalar_after_the_matmul_outside_the_quant_rules():
    cfg = ml_collections.ConfigDict(dict(name="transformer", layers=1, width=8, heads=2, seq_len=4,
                                         mlp_ratio=2, weight_scale="learned"))
    model = models.build(cfg, 256)
    tokens = jnp.array([[3, 1, 4, 1]])
    v = model.init(jax.random.PRNGKey(0), tokens)
    p = v["params"]
    q = p["block0"]["attn"]["q"]
    assert set(q) == {"kernel", "weight_scale"} and q["weight_scale"].shape == ()
    assert float(q["weight_scale"]) == pytest.approx(math.sqrt(3 / 8))       # sqrt(3 / fan_in)
    assert float(p["block0"]["mlp"]["down"]["weight_scale"]) == pytest.approx(math.sqrt(3 / 16))
    assert np.abs(np.asarray(q["kernel"])).max() <= 1.0                        # U(-1, 1)
    mask = dict(zip(param_paths(p), jax.tree.leaves(quant_mask(p, include=list(QUANT_INCLUDE)))))
    assert mask["block0/attn/q/kernel"] and not mask["block0/attn/q/weight_scale"]
    # y = s (x K), checked in numpy on the projection alone
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    k = np.random.default_rng(1).choice([-1.0, 0.0, 1.0], size=(8, 8)).astype(np.float32)
    from jaxquant.models.transformer import ScaledDense
    y = ScaledDense(8).apply({"params": {"kernel": k, "weight_scale": np.float32(0.25)}}, x)
    np.testing.assert_allclose(y, 0.25 * np.einsum("bti,io->bto", x, k), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="config.model.weight_scale"):
        models.build(ml_collections.ConfigDict({**cfg, "weight_scale": "absmean"}), 256)


# --------------------------------------------------------------------- random windows

def test_trainer_draws_random_contiguous_windows_reproducibly_per_step(tmp_path):
    c = tiny_lm_config(tmp_path)
    exp = train.build_experiment(c)
    batches = train._Batches(exp)
    assert batches.sampled
    fn = batches.compile(lambda state, sums, x, y: (state, (x, y)))
    data = exp.dataset.train.data.astype(np.int64)

    def batch(step):
        x, y = fn({}, {}, *batches.get(step))[1]
        return np.asarray(x, np.int64), np.asarray(y)

    x, y = batch(3)
    assert x.shape == y.shape == (8, 16)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets are the next bytes
    # each row is data[s : s + 17] for some start s (found by search, not by the sampler)
    starts = []
    for row_x, row_y in zip(x, y):
        window = np.concatenate([row_x, row_y[-1:]])
        hits = [s for s in range(len(data) - 16) if np.array_equal(data[s:s + 17], window)]
        assert hits, "a training row is not a contiguous window of the training bytes"
        starts.append(hits)
    # not only the fixed windows 0, T, 2T, ... that evaluation uses
    assert any(all(s % 16 for s in h) for h in starts)
    x2, _ = batch(3)
    assert batches.get(3)[1] is batches.key  # the seed's key is an argument of the step
    np.testing.assert_array_equal(x, x2)                # a function of the step (resume)
    assert not np.array_equal(x, batch(4)[0])


# --------------------------------------------------------------------- the five families

FAMILIES = {  # compare preset -> distinct levels of a projection kernel after training
    "md_tanh_s_ternary": 3, "md_softmax_s_ternary": 3, "pmf_ternary": 3,
    "proxquant_ternary_lm": 3, "bc": 2,
}


@pytest.mark.parametrize("preset", sorted(FAMILIES))
def test_family_trains_the_transformer_through_the_trainer(preset, tmp_path):
    base = tiny_lm_config(tmp_path)
    (spec,) = compare.parse_specs(preset)
    config = compare.method_config(base, spec, compare.budget_of(base), str(tmp_path))
    result = train.train_and_evaluate(config, str(tmp_path / "run"), log=lambda *_: None)
    assert result["step"] == 4 and math.isfinite(result["final_test_loss"])
    assert math.isfinite(result["final_val_loss"]) and result["final_val_loss"] > 0
    params, _, _ = checkpoints.load_weights(str(tmp_path / "run"))
    for path, leaf in zip(param_paths(params), jax.tree.leaves(params)):
        if path.endswith("/kernel") and path != "head/kernel":
            levels = np.unique(np.asarray(leaf))
            assert len(levels) <= FAMILIES[preset], (path, levels)
    summary = (tmp_path / "run" / "summary.txt").read_text()
    line = next(s for s in summary.splitlines() if s.startswith("block0/attn/q/kernel"))
    assert re.split(r"\s{2,}", line)[2] == ("1" if preset == "bc" else "2")


def test_proxquant_homotopy_counts_pseudo_epochs_on_a_budget_below_one_epoch():
    # 300 steps of a 1,000-step epoch: 15 pseudo-epochs of 20 steps, freeze at 10 (2/3),
    # reg_rate keeping the paper's accumulated strength: 0.01 1e-4 390 200^2 / (lr 20 10^2)
    made = compare._homotopy()(compare.Budget(300, 1000, 3e-3))
    assert made == dict(epoch_steps=20, reset_optimizer_every_epoch=False, freeze_epoch=10,
                        reg_rate=float(f"{0.01 * 1e-4 * 390 * 200 ** 2 / (3e-3 * 20 * 100):.3g}"))
    assert "epoch_steps" not in compare._homotopy()(compare.Budget(3000, 100, 3e-3))


# --------------------------------------------------------------------- export and generate

@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    base = tiny_lm_config(tmp)
    (spec,) = compare.parse_specs("md_tanh_s_ternary")
    config = compare.method_config(base, spec, compare.budget_of(base), str(tmp))
    workdir = str(tmp / "run")
    return workdir, train.train_and_evaluate(config, workdir, log=lambda *_: None)


def test_packed_ternary_round_trip_on_hand_made_values():
    w = np.array([[-0.5, 0.0, 0.5, 0.0], [0.5, 0.5, -0.5, 0.0]], np.float32)
    entry, payload = export.encode(w)
    assert (entry["encoding"], entry["bits"], entry["codebook"]) == ("packed", 2, [-0.5, 0.0, 0.5])
    # indices into the codebook: [0, 1, 2, 1] [2, 2, 0, 1], 2 bits each, least significant first:
    # 0 + 1*4 + 2*16 + 1*64 = 100, 2 + 2*4 + 0*16 + 1*64 = 74
    assert payload == bytes([100, 74])
    np.testing.assert_array_equal(export.decode(entry, payload), w)
    scale = np.float32(0.123)
    entry, payload = export.encode(np.asarray(scale), quantized=False)
    assert entry["encoding"] == "raw" and payload == np.float32(0.123).tobytes()


def test_export_packs_ternary_projections_and_its_bits_per_byte_equal_trainings(lm_run):
    workdir, result = lm_run
    out = export.export_run(workdir)
    manifest = export.read_manifest(out)
    by_name = {e["name"]: e for e in manifest["tensors"]}
    for name in ("block0/attn/q/kernel", "block0/mlp/up/kernel"):
        assert by_name[name]["encoding"] == "packed" and by_name[name]["bits"] == 2
    scale = by_name["block0/attn/q/weight_scale"]
    assert scale["encoding"] == "raw" and scale["shape"] == []
    got = evaluate.evaluate_export(out)
    assert got["text"] and got["loss"] == result["final_test_loss"]  # the same float
    assert got["loss"] / math.log(2) == result["final_test_loss"] / math.log(2)
    assert got["training_test_loss"] == result["final_test_loss"]


def test_generate_extends_the_prompt_greedily_as_the_model_predicts(lm_run):
    workdir, _ = lm_run
    model, params, _ = generate.load_lm(workdir)
    prompt = b"The quick"
    out = generate.sample(model, params, prompt, 8, temperature=0.0)
    assert out[:len(prompt)] == prompt and len(out) == len(prompt) + 8
    # by hand: run the model on the whole (growing) sequence, last 16 bytes, take the argmax
    seq = list(prompt)
    for _ in range(8):
        logits = model.apply({"params": params}, jnp.asarray([seq[-16:]]))[0, -1]
        seq.append(int(jnp.argmax(logits)))
    assert out == bytes(seq)
    a = generate.sample(model, params, prompt, 10, temperature=1.0, seed=1)
    assert a == generate.sample(model, params, prompt, 10, temperature=1.0, seed=1)
    model2, params2, _ = generate.load_lm(export=export.export_run(workdir))
    assert generate.sample(model2, params2, prompt, 8, temperature=0.0) == out


def _cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "jaxquant.generate", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_generate_cli_prints_a_sample_and_names_bad_runs(lm_run, tmp_path):
    workdir, _ = lm_run
    p = _cli(f"--workdir={workdir}", "--prompt=A stitch", "--bytes=12", "--temperature=0.5")
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("A stitch") and len(p.stdout.rstrip("\n")) >= len("A stitch")
    # a run of another model, a run without checkpoints: user errors, exit 2, no traceback
    cnn = tmp_path / "cnn"
    cnn.mkdir()
    (cnn / "config.json").write_text(json.dumps(dict(model=dict(name="resnet20"))))
    with pytest.raises(generate.GenerateError, match="not a language model"):
        generate.load_lm(str(cnn))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(open(os.path.join(workdir, "config.json")).read())
    p = _cli(f"--workdir={empty}", "--prompt=x")
    assert p.returncode == 2 and "no checkpoint" in p.stderr and "Traceback" not in p.stderr
    with pytest.raises(generate.GenerateError, match="--temperature"):
        generate.sample(*generate.load_lm(workdir)[:2], b"x", 3, temperature=-1.0)


def test_bitnet_is_a_public_name_like_the_other_baselines():
    import jaxquant as jq
    from jaxquant.methods import baselines
    assert jq.bitnet is baselines.bitnet and "bitnet" in jq.__all__


def test_md_tanh_s_ternary_lm_config_uses_the_compare_presets_annealing():
    from conftest import load_config
    c = load_config("lm_fortunes_md_tanh_s_ternary")
    base = load_config("lm_fortunes_fp")
    (spec,) = compare.parse_specs("md_tanh_s_ternary")
    budget = compare.Budget(int(base.train.steps), 1000, float(base.optimizer.lr))
    preset = compare.method_config(base, spec, budget, "w").method
    assert c.method.to_dict() == {**preset.to_dict(), "beta_max": 1e35}
    assert c.model.weight_scale == "learned" and c.train.steps == 300
