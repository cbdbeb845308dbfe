"""Bit packing, the export format, its size and its failure modes."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxquant import export as E
from jaxquant import models
from jaxquant.masks import quant_mask


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 7, 8]), st.integers(0, 77), st.randoms(use_true_random=False))
def test_pack_unpack_round_trip_for_odd_sizes(bits, count, rnd):
    idx = np.array([rnd.randrange(1 << bits) for _ in range(count)], np.uint8)
    data = E.pack_bits(idx, bits)
    assert len(data) == (count * bits + 7) // 8
    np.testing.assert_array_equal(E.unpack_bits(data, bits, count), idx)


def test_pack_bits_layout_is_little_endian_by_hand():
    # 1 bit: element i is bit i of the stream, LSB first: [1,0,1,1,0,0,0,0, 1] -> 0b00001101, 0b1.
    assert E.pack_bits(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1) == bytes([0b00001101, 0b1])
    # 2 bits: [2, 1, 0, 3] -> 10 | 01<<2 | 00<<4 | 11<<6 = 0b11000110.
    assert E.pack_bits(np.array([2, 1, 0, 3]), 2) == bytes([0b11000110])
    # 3 bits: [5, 6, 7] -> 101 | 110<<3 | 111<<6 = 0b111110101 -> 0xF5, 0x01.
    assert E.pack_bits(np.array([5, 6, 7]), 3) == bytes([0xF5, 0x01])
    assert E.pack_bits(np.array([200, 7]), 8) == bytes([200, 7])


def test_pack_rejects_bad_bits_and_out_of_range_indices():
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match=r"bits must be an integer in 1\.\.8"):
            E.pack_bits(np.zeros(3, np.uint8), bad)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        E.pack_bits(np.array([0, 4]), 2)
    with pytest.raises(ValueError, match="need 2 bytes"):
        E.unpack_bits(b"\x00", 3, 5)


@pytest.mark.parametrize("x,bits", [
    (np.array([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]] * 20, np.float32), 1),
    (np.tile(np.array([-0.7, 0.0, 0.7, 0.0, 0.0], np.float32), 30), 2),
    (np.repeat(np.arange(-7, 8, dtype=np.float32) / 7, 11).reshape(15, 11), 4),
])
def test_encode_packs_quantized_tensors_with_their_codebook(x, bits):
    entry, payload = E.encode(x)
    assert entry["encoding"] == "packed" and entry["bits"] == bits
    assert len(payload) == (x.size * bits + 7) // 8
    np.testing.assert_array_equal(E.decode(entry, payload), x)


def test_encode_keeps_full_precision_tensors_raw_and_exact():
    x = np.random.default_rng(0).normal(size=(17, 19)).astype(np.float32)
    for quantized in (True, False):
        entry, payload = E.encode(x, quantized=quantized)
        assert entry["encoding"] == "raw" and entry["bits"] == 32
        np.testing.assert_array_equal(E.decode(entry, payload), x)


def test_codebook_values_survive_json_exactly():
    # 3-bit DoReFa levels times an arbitrary scale: values with no short decimal form.
    levels = np.float32(0.8137219) * (2 * np.arange(8, dtype=np.float32) / 7 - 1)
    x = np.random.default_rng(0).choice(levels, size=600)
    entry, payload = E.encode(x)
    entry = json.loads(json.dumps(entry))
    np.testing.assert_array_equal(E.decode(entry, payload), x)


PARAMS = {"dense": {"kernel": np.sign(np.random.default_rng(1).normal(size=(64, 10))).astype(np.float32),
                    "bias": np.linspace(-1, 1, 10).astype(np.float32)}}
MASK = {"dense": {"kernel": True, "bias": False}}
STATS = {"bn": {"mean": np.arange(5, dtype=np.float32), "var": np.ones(5, np.float32)}}


def test_summary_table_by_hand():
    table = E.summary_table(PARAMS, MASK, STATS)
    lines = table.splitlines()
    kernel = next(l for l in lines if l.startswith("dense/kernel"))
    # 640 binary weights: 80 bytes + a 2-level float32 codebook (8 bytes).
    assert kernel.split()[-3:] == ["1", "640", "88"]
    bias = next(l for l in lines if l.startswith("dense/bias"))
    assert bias.split()[-3:] == ["32", "10", "40"]
    assert any(l.startswith("batch_stats/bn/mean") for l in lines)
    # total 660 params, 88 + 40 + 20 + 20 = 168 bytes; float32 2,640 bytes -> 15.7x.
    assert lines[-2].split()[-2:] == ["660", "168"]
    assert lines[-1] == "float32 size 2,640 bytes; quantized size 168 bytes; compression 15.7x"


def test_write_then_load_round_trips_params_and_batch_stats(tmp_path):
    E.write(str(tmp_path), PARAMS, STATS, MASK, config={"model": {"name": "mlp"}}, info={"step": 3})
    params, stats, manifest = E.load(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, params, PARAMS)
    jax.tree.map(np.testing.assert_array_equal, stats, STATS)
    assert manifest["config"] == {"model": {"name": "mlp"}} and manifest["info"] == {"step": 3}
    kernel = next(t for t in manifest["tensors"] if t["name"] == "dense/kernel")
    assert kernel["encoding"] == "packed" and kernel["codebook"] == [-1.0, 1.0]
    assert os.path.getsize(tmp_path / E.BLOB) == 80 + 40 + 20 + 20


def test_corrupted_blob_is_a_clear_error_naming_the_file(tmp_path):
    E.write(str(tmp_path), PARAMS, STATS, MASK)
    blob = tmp_path / E.BLOB
    data = bytearray(blob.read_bytes())
    data[5] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(E.ExportError, match=r"weights\.bin is corrupted"):
        E.load(str(tmp_path))
    blob.write_bytes(bytes(data[:-7]))
    with pytest.raises(E.ExportError, match=r"weights\.bin is truncated"):
        E.load(str(tmp_path))
    blob.unlink()
    with pytest.raises(E.ExportError, match=r"weights\.bin is missing"):
        E.load(str(tmp_path))


def test_corrupted_manifest_is_a_clear_error_naming_the_file(tmp_path):
    E.write(str(tmp_path), PARAMS, STATS, MASK)
    manifest = tmp_path / E.MANIFEST
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(E.ExportError, match=r"manifest\.json is not a readable JSON manifest"):
        E.load(str(tmp_path))
    manifest.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(E.ExportError, match=r"manifest\.json is not a jaxquant export"):
        E.load(str(tmp_path))
    m = json.loads(text)
    m["tensors"][0]["shape"] = [3]
    m["manifest_sha256"] = E.manifest_sha256(m)  # self-consistent, yet the payload does not fit
    manifest.write_text(json.dumps(m))
    with pytest.raises(E.ExportError, match=r"manifest\.json: bad tensor entry"):
        E.load(str(tmp_path))
    with pytest.raises(E.ExportError, match="no export at"):
        E.load(str(tmp_path / "nowhere"))


@functools.lru_cache(maxsize=None)
def _binary_resnet20(affine_bn):
    cfg = ml_collections.ConfigDict(dict(name="resnet20", shortcut="A", affine_bn=affine_bn))
    model = models.build(cfg, 10)
    # The init's shapes, filled with seeded normal values (compiling the init takes
    # over a minute on a busy CPU; the export only sees shapes and values).
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    params, stats = variables["params"], variables["batch_stats"]
    mask = quant_mask(params, include=[".*kernel"])  # every conv and the fc, as in md-bnn / PMF
    return jax.tree.map(lambda m, x: np.where(x >= 0, 1.0, -1.0).astype(x.dtype) if m else x,
                        mask, params), stats, mask


def test_binary_resnet20_export_is_at_most_a_25th_of_float32_with_bn(tmp_path):
    # md-bnn / PMF binary ResNet-20: every kernel binary, non-affine BN (running stats kept).
    params, stats, mask = _binary_resnet20(affine_bn=False)
    manifest = E.write(str(tmp_path), params, stats, mask)
    n = sum(x.size for x in jax.tree.leaves((params, stats)))
    codebooks = sum(4 * len(t.get("codebook", ())) for t in manifest["tensors"])
    stored = os.path.getsize(tmp_path / E.BLOB) + codebooks
    assert stored * 25 <= 4 * n, (stored, 4 * n)
    loaded, loaded_stats, _ = E.load(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, (loaded, loaded_stats), jax.device_get((params, stats)))


def test_summary_table_totals_match_the_export(tmp_path):
    params, stats, mask = _binary_resnet20(affine_bn=True)
    manifest = E.write(str(tmp_path), params, stats, mask)
    codebooks = sum(4 * len(t.get("codebook", ())) for t in manifest["tensors"])
    total = int(E.summary_table(params, mask, stats).splitlines()[-2].split()[-1].replace(",", ""))
    assert total == os.path.getsize(tmp_path / E.BLOB) + codebooks
    assert E.manifest_table(manifest) == E.summary_table(params, mask, stats)
