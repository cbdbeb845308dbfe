"""Byte-level text corpora: files, the split by position, windows, the fortunes corpus."""
import math
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxquant import data, methods, models
from jaxquant.data import text
from jaxquant.data.dataset import DataError
from jaxquant.masks import quant_mask
from jaxquant.methods.base import Context, default_loss
from jaxquant.models.transformer import QUANT_INCLUDE


def _write(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


def test_split_is_by_position_per_file_without_overlap(tmp_path):
    a = _write(tmp_path, "a.txt", bytes(range(100)))        # 100 bytes: 80 / 10 / 10
    b = _write(tmp_path, "b.txt", bytes(range(100, 140)))   # 40 bytes: 32 / 4 / 4
    train, val, test = text.split_bytes([a, b], validation=0.1, test=0.1)
    np.testing.assert_array_equal(train, list(range(80)) + list(range(100, 132)))
    np.testing.assert_array_equal(val, list(range(80, 90)) + list(range(132, 136)))
    np.testing.assert_array_equal(test, list(range(90, 100)) + list(range(136, 140)))
    assert not set(train.tolist()) & set(val.tolist()) and not set(val.tolist()) & set(test.tolist())


def test_directory_is_read_sorted_without_symlinks_and_commas_join_paths(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    _write(d, "b", b"BB")
    _write(d / "sub", "c", b"C")
    _write(d, "a", b"A")
    os.symlink(d / "a", d / "a.u8")
    other = _write(tmp_path, "z.txt", b"Z")
    assert [os.path.relpath(f, tmp_path) for f in text.text_files(f"{d},{other}")] == [
        "corpus/a", "corpus/b", "corpus/sub/c", "z.txt"]
    with pytest.raises(DataError, match="neither a file nor a directory"):
        text.text_files(str(tmp_path / "missing"))


def test_windows_are_contiguous_and_targets_are_the_next_bytes(tmp_path):
    corpus = bytes((7 * i) % 256 for i in range(1000))
    ds = text.load(f"text_file:{_write(tmp_path, 'c.bin', corpus)}", seq_len=8, validation=0.1, test=0.1)
    assert len(ds.train.data) == 800 and len(ds.train) == 799 // 8
    x, y = ds.train.get_batch([0, 3])
    np.testing.assert_array_equal(x[1], [(7 * i) % 256 for i in range(24, 32)])
    np.testing.assert_array_equal(y[1], [(7 * i) % 256 for i in range(25, 33)])
    assert x.dtype == np.uint8 and y.dtype == np.int32
    x, y = jax.jit(text.sample_windows, static_argnums=(2, 3))(jnp.asarray(ds.train.data),
                                                              jax.random.PRNGKey(0), 64, 8)
    x, y = np.asarray(x, np.int64), np.asarray(y)
    start = (x[:, 0] * 183) % 256  # 7^-1 = 183 mod 256: recovers i from 7 i mod 256
    assert start.max() <= 800 - 9 and len(set(start.tolist())) > 10
    np.testing.assert_array_equal(x, (7 * (start[:, None] + np.arange(8))) % 256)
    np.testing.assert_array_equal(y, (7 * (start[:, None] + np.arange(1, 9))) % 256)


def test_bad_fractions_short_splits_and_unknown_names_are_data_errors(tmp_path):
    f = _write(tmp_path, "t.txt", b"x" * 100)
    with pytest.raises(DataError, match="validation .* test"):
        text.load(f"text_file:{f}", 8, validation=0.5, test=0.5)
    with pytest.raises(DataError, match="validation split has 5 bytes"):
        text.load(f"text_file:{f}", 8)
    with pytest.raises(DataError, match="text_file:<path>"):
        text.load("shakespeare", 8)
    cfg = ml_collections.ConfigDict(dict(name=f"text_file:{f}", validation=10, seq_len=8))
    with pytest.raises(DataError, match="leave config.dataset.validation at 0"):
        data.load(cfg)


def test_text_file_source_gives_the_trainer_windows_without_normalisation(tmp_path):
    f = _write(tmp_path, "t.txt", bytes(range(200)))
    ds = data.load(ml_collections.ConfigDict(dict(name=f"text_file:{f}", validation=0, seq_len=8)))
    assert (ds.num_classes, ds.image_shape, ds.mean, ds.augment) == (256, (8,), (), "none")
    assert ds.train.images.shape == ds.train.labels.shape == ((180 - 1) // 8, 8)
    np.testing.assert_array_equal(ds.train.images[2], range(16, 24))
    np.testing.assert_array_equal(ds.train.labels[2], range(17, 25))
    np.testing.assert_array_equal(ds.test.images[0], range(190, 198))  # last 5% of the file


def test_bits_per_byte_is_nats_over_ln2():
    assert text.bits_per_byte(math.log(256)) == pytest.approx(8.0)


fortunes = pytest.mark.skipif(not os.path.isdir(text.FORTUNES_DIR),
                              reason="Debian's fortunes package is not installed")


@fortunes
def test_fortunes_corpus_reads_text_without_index_files():
    ds = data.load_text("fortunes", seq_len=64)
    assert ds.files and not any(f.endswith((".dat", ".u8")) for f in ds.files)
    total = sum(os.path.getsize(f) for f in ds.files)
    assert len(ds.train.data) + len(ds.validation.data) + len(ds.test.data) == total
    assert total > 1_000_000 and len(ds.validation.data) == pytest.approx(0.05 * total, rel=0.01)
    sample = bytes(ds.train.data[:5000]).decode("utf-8", errors="replace")
    assert "\n%\n" in sample  # fortunes are separated by a line holding '%'


@fortunes
def test_bitnet_transformer_learns_fortunes_bytes_without_the_trainer():
    ds = data.load_text("fortunes", seq_len=32)
    model = models.build(ml_collections.ConfigDict(dict(name="transformer", layers=1, width=32, heads=2,
                                                        seq_len=32, absmax_act_bits=8)), ds.vocab)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32), jnp.int32))["params"]
    cfg = ml_collections.ConfigDict(dict(method=dict(name="bitnet")))
    mask = lambda p: quant_mask(p, include=list(QUANT_INCLUDE), strict=False)  # noqa: E731
    method = methods.build("bitnet", Context(cfg, optax.adam(3e-3), lambda s: 3e-3, mask, 1))
    apply = lambda v, x, train, mutable: (model.apply(v, x), {})  # noqa: E731
    data_dev = jnp.asarray(ds.train.data)

    @jax.jit
    def step(latent, opt_state, key):
        x, y = text.sample_windows(data_dev, key, 16, 32)
        (loss, _), g = jax.value_and_grad(
            lambda l: default_loss(method, apply, l, {}, x, y, 0), has_aux=True)(latent)
        updates, opt_state = method.tx.update(g, opt_state, latent)
        return optax.apply_updates(latent, updates), opt_state, loss

    latent = method.init(params)
    opt_state = method.tx.init(latent)
    losses = []
    for i in range(60):
        latent, opt_state, loss = step(latent, opt_state, jax.random.PRNGKey(i))
        losses.append(float(loss))
    assert losses[0] > 5.0  # about uniform over the 256 bytes at init (ln 256 = 5.55)
    x, y = ds.validation.get_batch(np.arange(32))
    logits = model.apply({"params": method.project(latent)}, x)
    val_bpb = text.bits_per_byte(optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())
    assert np.mean(losses[-10:]) < 3.6  # measured 3.2 (seed 0, 60 steps)
    assert val_bpb < 5.0  # measured 4.45: far below the uniform 8 bits per byte


@pytest.mark.slow  # two CLI runs (~1 min each on a loaded 2-core machine)
@fortunes
def test_lm_configs_train_end_to_end_through_the_cli(tmp_path):
    import json
    import subprocess
    import sys
    from conftest import REPO
    tiny = ["--config.model.layers=1", "--config.model.width=16", "--config.model.heads=2",
            "--config.model.seq_len=16", "--config.dataset.seq_len=16", "--config.train.steps=3",
            "--config.train.eval_every_steps=3", "--config.train.batch_size=8",
            "--config.train.eval_batch_size=2048", "--config.schedule.warmup=0"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for name in ("lm_fortunes_bitnet", "lm_fortunes_fp"):
        out = subprocess.run([sys.executable, "-m", "jaxquant.main", "--config", f"configs/{name}.py",
                              "--workdir", str(tmp_path / name), *tiny], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.load(open(tmp_path / name / "result.json"))["step"] == 3
        last = [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")][-1]
        # per next-byte prediction (not summed over the 16 positions of a window)
        assert 0 < last["test_loss"] < math.log(256) + 1 and 0 <= last["test_accuracy"] <= 1
        summary = open(tmp_path / name / "summary.txt").read()
        q_bits = [re.split(r"\s{2,}", line)[2] for line in summary.splitlines()
                  if line.startswith("block0/attn/q/kernel")]
        assert q_bits == (["2"] if name == "lm_fortunes_bitnet" else ["32"])
