"""Export of a trained run: hard-quantized weights, really bit-packed, pickle-free.

An export directory holds two files:
- `manifest.json`: format/version, the run's config (model, dataset, ...), and one
  entry per tensor: collection ('params' | 'batch_stats'), path, shape, dtype,
  encoding, bits, codebook, byte offset and length in the blob;
- `weights.bin`: the concatenated tensor payloads (its size and SHA-256 are in the
  manifest, so a truncated or corrupted file is detected).

The manifest carries `manifest_sha256`, the SHA-256 of its own canonical JSON
(`json.dumps(sort_keys=True, separators=(",", ":"))` of every other field). It
covers the codebooks, offsets, shapes, config and the blob's SHA-256, so an edited
manifest (a swapped codebook, two tensors' offsets exchanged) is refused like a
corrupted blob. It detects accidents and edits, not forgery (anyone can recompute
it). A manifest is also checked field by field: a wrong type names the field.

Encodings:
- `packed`: a tensor with L <= 256 distinct values is stored as indices into its
  sorted codebook of those values (in the manifest), k = max(1, ceil(log2 L)) bits
  per weight: binary 1 bit (8 weights/byte), ternary 2 bits, DoReFa k-bit k bits.
  This works for every method because it reads only the projected weights.
  Index i occupies bits [i k, (i + 1) k) of the payload, least significant first.
- `raw`: little-endian bytes of the array (BN statistics, full-precision layers,
  and any tensor the packed form would not make smaller).

`python -m jaxquant.export --workdir runs/x` writes `runs/x/export/`;
`python -m jaxquant.evaluate --export runs/x/export` evaluates it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Sequence

import jax
import numpy as np

from jaxquant.errors import UserError
from jaxquant.masks import path_str

FORMAT = "jaxquant-export"
VERSION = 2  # 2: manifest_sha256 over the manifest itself
MANIFEST = "manifest.json"
BLOB = "weights.bin"
MAX_LEVELS = 256
ENCODINGS = ("packed", "raw")
COLLECTIONS = ("params", "batch_stats")


class ExportError(UserError):
    """An export that cannot be written or read (missing, truncated, corrupted)."""


# ---------------------------------------------------------------- bit packing

def _check_pack_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}.")
    return int(bits)


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by `count` k-bit indices: ceil(count k / 8)."""
    return (int(count) * _check_pack_bits(bits) + 7) // 8


def pack_bits(indices: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers < 2^bits into a little-endian bit stream, `bits` bits each.

    indices: any shape (flattened in C order); returns packed_size(size, bits) bytes.
    """
    bits = _check_pack_bits(bits)
    idx = np.asarray(indices).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= (1 << bits)):
        raise ValueError(f"indices must lie in [0, {1 << bits}) to pack into {bits} bits, "
                         f"got range [{idx.min()}, {idx.max()}].")
    idx = idx.astype(np.uint8)
    planes = (idx[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.ravel(), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`: the first `count` k-bit indices of `data`, as uint8."""
    bits = _check_pack_bits(bits)
    need = packed_size(count, bits)
    if len(data) < need:
        raise ValueError(f"{count} indices of {bits} bits need {need} bytes, got {len(data)}.")
    raw = np.frombuffer(data, np.uint8, count=need)
    planes = np.unpackbits(raw, count=count * bits, bitorder="little").reshape(count, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint32).astype(np.uint8)


# ---------------------------------------------------------------- one tensor

def _codebook(x: np.ndarray):
    """Sorted distinct values of a float tensor if there are at most MAX_LEVELS, else None."""
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0 or not np.isfinite(x).all():
        return None
    levels = np.unique(x)
    return levels if len(levels) <= MAX_LEVELS else None


def _bits_for(levels: int) -> int:
    return max(1, math.ceil(math.log2(levels)))


def encode(x, quantized: bool = True) -> tuple[dict, bytes]:
    """(entry, payload) for one tensor: packed codebook indices if `quantized` and that
    is smaller than the raw bytes, raw little-endian bytes otherwise."""
    x = np.asarray(x)
    entry = dict(shape=list(x.shape), dtype=x.dtype.str.lstrip("<>|="))
    levels = _codebook(x) if quantized else None
    if levels is not None:
        bits = _bits_for(len(levels))
        size = packed_size(x.size, bits) + levels.nbytes
        if size < x.nbytes:
            idx = np.searchsorted(levels, x.ravel())
            entry.update(encoding="packed", bits=bits,
                         codebook=[float(v) for v in levels])
            return entry, pack_bits(idx, bits)
    entry.update(encoding="raw", bits=8 * x.dtype.itemsize)
    return entry, np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()


def decode(entry: dict, payload: bytes) -> np.ndarray:
    """Inverse of `encode`."""
    shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"]).newbyteorder("<")
    count = math.prod(shape)
    if entry["encoding"] == "packed":
        levels = np.asarray(entry["codebook"], dtype=dtype)
        idx = unpack_bits(payload, entry["bits"], count)
        if idx.size and idx.max() >= len(levels):
            raise ValueError(f"index {idx.max()} outside the codebook of {len(levels)} levels")
        return levels[idx].reshape(shape).astype(dtype.newbyteorder("="))
    if entry["encoding"] == "raw":
        if len(payload) != count * dtype.itemsize:
            raise ValueError(f"raw payload has {len(payload)} bytes, expected {count * dtype.itemsize}")
        return np.frombuffer(payload, dtype).reshape(shape).astype(dtype.newbyteorder("="))
    raise ValueError(f"unknown encoding {entry['encoding']!r}")


def stored_bytes(entry: dict) -> int:
    """Bytes a tensor takes in the export: payload plus its codebook."""
    count = math.prod(entry["shape"])
    if entry["encoding"] == "packed":
        return packed_size(count, entry["bits"]) + len(entry["codebook"]) * np.dtype(entry["dtype"]).itemsize
    return count * np.dtype(entry["dtype"]).itemsize


# ---------------------------------------------------------------- pytrees

def _leaves(tree) -> list[tuple[list[str], np.ndarray]]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out.append((path_str(path).split("/"), np.asarray(jax.device_get(leaf))))
    return out


def _mask_leaves(mask, tree) -> list[bool]:
    if mask is None:
        return [True] * len(jax.tree.leaves(tree))
    from jaxquant.methods.checks import mask_for
    return [bool(f) for f in jax.tree.leaves(mask_for(mask, tree))]


def _nest(items: Sequence[tuple[list[str], np.ndarray]]) -> dict:
    root: dict = {}
    for keys, value in items:
        node = root
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return root


def _table(rows) -> str:
    """rows: (name, shape, bits, params, bytes) -> the size report."""
    name_w = max([len("name")] + [len(r[0]) for r in rows])
    shape_w = max([len("shape")] + [len(str(r[1])) for r in rows])
    head = f"{'name':<{name_w}}  {'shape':<{shape_w}}  {'bits':>4}  {'params':>11}  {'bytes':>11}"
    rule = "-" * len(head)
    lines = [head, rule]
    for name, shape, bits, n, b in rows:
        lines.append(f"{name:<{name_w}}  {str(shape):<{shape_w}}  {bits:>4}  {n:>11,}  {b:>11,}")
    n_total, b_total = sum(r[3] for r in rows), sum(r[4] for r in rows)
    f_total = 4 * n_total
    lines += [rule, f"{'total':<{name_w}}  {'':<{shape_w}}  {'':>4}  {n_total:>11,}  {b_total:>11,}"]
    ratio = f_total / b_total if b_total else float("nan")
    lines.append(f"float32 size {f_total:,} bytes; quantized size {b_total:,} bytes; "
                 f"compression {ratio:.1f}x")
    return "\n".join(lines)


def _rows(entries):
    return [(("" if e.get("collection", "params") == "params" else e["collection"] + "/") + e["name"],
             tuple(e["shape"]), e["bits"], math.prod(e["shape"]), stored_bytes(e)) for e in entries]


def summary_table(params, mask, batch_stats=None) -> str:
    """Per-layer size report of hard-quantized params (and BN statistics if given).

    Columns: name, shape, bits (per stored value: codebook-index bits of a packed
    tensor, 32 for a float32 one), params, bytes (as `write` stores them, codebooks
    included); then totals and the compression ratio vs float32. `mask` (bools like
    `params`) says which leaves are quantized; those with at most 256 distinct values
    are counted packed. Takes only pytrees.
    """
    return _table(_rows(_entries(params, batch_stats, mask)))


def manifest_table(manifest: dict) -> str:
    """The `summary_table` of an export, from its manifest."""
    return _table(_rows(manifest["tensors"]))


def _entries(params, batch_stats, mask, chunks: list | None = None) -> list[dict]:
    """Manifest entries of params (packed where `mask`) and batch_stats (raw); payloads
    are appended to `chunks` when given."""
    entries, offset = [], 0
    groups = [("params", params, _mask_leaves(mask, params))]
    if batch_stats:
        groups.append(("batch_stats", batch_stats, [False] * len(jax.tree.leaves(batch_stats))))
    for collection, tree, quantized in groups:
        for (keys, x), q in zip(_leaves(tree), quantized):
            entry, payload = encode(x, quantized=q)
            entries.append(dict(collection=collection, path=keys, name="/".join(keys), **entry,
                                offset=offset, nbytes=len(payload)))
            offset += len(payload)
            if chunks is not None:
                chunks.append(payload)
    return entries


# ---------------------------------------------------------------- write / read

def write(directory: str, params, batch_stats=None, mask=None, config: dict | None = None,
          info: dict | None = None) -> dict:
    """Write `params` (hard-quantized; leaves where `mask` is True are packed) and
    `batch_stats` (raw) to `directory`; returns the manifest."""
    os.makedirs(directory, exist_ok=True)
    chunks: list[bytes] = []
    entries = _entries(params, batch_stats, mask, chunks)
    blob = b"".join(chunks)
    manifest = dict(format=FORMAT, version=VERSION, blob=BLOB, blob_bytes=len(blob),
                    blob_sha256=hashlib.sha256(blob).hexdigest(), config=config or {},
                    info=info or {}, tensors=entries)
    # the checksum of the manifest as it will read back (JSON turns tuples into lists)
    manifest = json.loads(json.dumps(manifest))
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    with open(os.path.join(directory, BLOB), "wb") as f:
        f.write(blob)
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def manifest_sha256(manifest: dict) -> str:
    """SHA-256 of the canonical JSON of `manifest` without its `manifest_sha256` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_int(x, low: int = 0) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_sha256(x) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def _is_dtype(x) -> bool:
    try:
        return isinstance(x, str) and np.dtype(x).kind in "biuf"
    except TypeError:
        return False


# field -> (check, what is allowed); the tensor entries' fields in _TENSOR_FIELDS
_FIELDS = {
    "blob": (lambda v: isinstance(v, str) and v == os.path.basename(v) and v not in ("", ".", ".."),
             "a file name in the export directory"),
    "blob_bytes": (_is_int, "an integer >= 0"),
    "blob_sha256": (_is_sha256, "64 lowercase hex digits"),
    "manifest_sha256": (_is_sha256, "64 lowercase hex digits"),
    "config": (lambda v: isinstance(v, dict), "an object (the run's config)"),
    "info": (lambda v: isinstance(v, dict), "an object"),
    "tensors": (lambda v: isinstance(v, list), "a list of tensor entries"),
}
_INFO_FIELDS = {
    "step": (lambda v: v is None or _is_int(v), "an integer >= 0"),
    "training_test_accuracy": (_is_number, "a number"),
    "training_test_loss": (_is_number, "a number"),
}
_TENSOR_FIELDS = {
    "collection": (lambda v: v in COLLECTIONS, f"one of {', '.join(COLLECTIONS)}"),
    "path": (lambda v: isinstance(v, list) and v and all(isinstance(k, str) for k in v),
             "a non-empty list of strings"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "shape": (lambda v: isinstance(v, list) and all(_is_int(n) for n in v),
              "a list of integers >= 0"),
    "dtype": (_is_dtype, "a numpy dtype name such as 'float32'"),
    "encoding": (lambda v: v in ENCODINGS, f"one of {', '.join(ENCODINGS)}"),
    "bits": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "offset": (_is_int, "an integer >= 0"),
    "nbytes": (_is_int, "an integer >= 0"),
}


def _check_structure(manifest: dict, path: str) -> None:
    """ExportError naming the first missing or mistyped field of a manifest."""
    def bad(field, value, allowed):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        what = "is missing" if value is _MISSING else f"is {shown}"
        raise ExportError(f"{path}: field {field!r} {what}; it must be {allowed}. The manifest "
                          f"was edited or is corrupted: export the run again.")

    for key, (ok, allowed) in _FIELDS.items():
        value = manifest.get(key, _MISSING)
        if value is _MISSING or not ok(value):
            bad(key, value, allowed)
    for key, (ok, allowed) in _INFO_FIELDS.items():  # optional
        if key in manifest["info"] and not ok(manifest["info"][key]):
            bad(f"info.{key}", manifest["info"][key], allowed)
    for i, entry in enumerate(manifest["tensors"]):
        if not isinstance(entry, dict):
            bad(f"tensors[{i}]", entry, "an object")
        fields = dict(_TENSOR_FIELDS)
        if entry.get("encoding") == "packed":
            fields["codebook"] = (lambda v: isinstance(v, list) and v and all(map(_is_number, v)),
                                  "a non-empty list of numbers")
        for key, (ok, allowed) in fields.items():
            value = entry.get(key, _MISSING)
            if value is _MISSING or not ok(value):
                bad(f"tensors[{i}].{key}", value, allowed)
        if entry["offset"] + entry["nbytes"] > manifest["blob_bytes"]:
            bad(f"tensors[{i}].offset", entry["offset"],
                f"such that offset + nbytes <= blob_bytes ({manifest['blob_bytes']})")


_MISSING = object()


def read_manifest(directory: str) -> dict:
    """The manifest of an export, checked for format, version, structure (every field's
    type) and its `manifest_sha256`; ExportError naming the file and the field otherwise."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise ExportError(f"no export at {directory!r}: {path} does not exist. Write one with "
                          f"`python -m jaxquant.export --workdir <run>`.")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"{path} is not a readable JSON manifest ({e}); the export is "
                          f"corrupted: export the run again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path} is not a jaxquant export manifest (format field is not {FORMAT!r}).")
    if manifest.get("version") != VERSION:
        raise ExportError(f"{path} has export format version {manifest.get('version')!r}; this "
                          f"jaxquant reads version {VERSION}. Export the run again with "
                          f"`python -m jaxquant.export --workdir <run>`.")
    _check_structure(manifest, path)
    if manifest_sha256(manifest) != manifest["manifest_sha256"]:
        raise ExportError(f"{path} does not match its manifest_sha256: the manifest was edited "
                          f"or corrupted after the export (a codebook, offset, shape or the "
                          f"config changed). Export the run again.")
    return manifest


def load(directory: str) -> tuple[dict, dict, dict]:
    """(params, batch_stats, manifest) of an export, as nested dicts of numpy arrays.

    Raises ExportError naming the file when the manifest or blob is missing,
    truncated or corrupted.
    """
    manifest = read_manifest(directory)
    path = os.path.join(directory, manifest.get("blob", BLOB))
    if not os.path.isfile(path):
        raise ExportError(f"the export's weight file {path} is missing; export the run again.")
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) != manifest["blob_bytes"]:
        raise ExportError(f"{path} is truncated or padded: {len(blob)} bytes, the manifest says "
                          f"{manifest['blob_bytes']}. Export the run again.")
    if hashlib.sha256(blob).hexdigest() != manifest["blob_sha256"]:
        raise ExportError(f"{path} is corrupted: its SHA-256 does not match the manifest. "
                          f"Export the run again.")
    trees: dict[str, list] = {"params": [], "batch_stats": []}
    for entry in manifest["tensors"]:
        try:
            payload = blob[entry["offset"]:entry["offset"] + entry["nbytes"]]
            value = decode(entry, payload)
            trees[entry["collection"]].append((entry["path"], value))
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{os.path.join(directory, MANIFEST)}: bad tensor entry "
                              f"{entry.get('name', '?')!r} ({e}). Export the run again.") from None
    return _nest(trees["params"]), _nest(trees["batch_stats"]), manifest


def export_run(workdir: str, out: str | None = None, step: int | None = None,
               best: bool = False) -> str:
    """Export the hard-quantized weights saved by a trainer run; returns the export dir.

    Reads `workdir/config.json` and the latest checkpoint (or `step`, or the best
    validation checkpoint with `best`); quantized leaves are chosen by the run's
    `config.quant` rules.
    """
    from jaxquant import checkpoints
    from jaxquant.masks import quant_mask

    config_path = os.path.join(workdir, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read the run config {config_path} ({e}); --workdir must be "
                          f"the workdir of a trainer run.") from None
    source = os.path.join(os.path.abspath(workdir), "best") if best else workdir
    params, batch_stats, step = checkpoints.load_weights(source, step)
    quant = config.get("quant", {})
    mask = quant_mask(params, quant.get("include", [".*"]), quant.get("exclude", []), strict=False)
    info = dict(step=step, workdir=os.path.abspath(workdir), checkpoint="best" if best else "latest")
    result_path = os.path.join(workdir, "result.json")
    if os.path.isfile(result_path) and not best:
        with open(result_path) as f:
            result = json.load(f)
        if result.get("step") == step and "final_test_accuracy" in result:
            info["training_test_accuracy"] = result["final_test_accuracy"]
        if result.get("step") == step and "final_test_loss" in result:
            info["training_test_loss"] = result["final_test_loss"]
    out = out or os.path.join(workdir, "export")
    write(out, params, batch_stats, mask, config=config, info=info)
    return out


def fail(message: str) -> None:
    """End a CLI with a one-paragraph user-error message and exit status 2."""
    import sys
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    from absl import flags
    from jaxquant.checkpoints import quiet_orbax_logs
    del argv
    quiet_orbax_logs()
    FLAGS = flags.FLAGS
    try:
        out = export_run(FLAGS.workdir, FLAGS.out or None, FLAGS.step if FLAGS.step >= 0 else None,
                         FLAGS.best)
        manifest = load(out)[2]
    except UserError as e:
        fail(str(e))
    print(manifest_table(manifest))
    total = os.path.getsize(os.path.join(out, BLOB)) + os.path.getsize(os.path.join(out, MANIFEST))
    print(f"wrote {out} (step {manifest['info']['step']}, {total:,} bytes with the manifest)")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "Workdir of a trainer run.")
    flags.DEFINE_string("out", "", "Export directory (default: <workdir>/export).")
    flags.DEFINE_integer("step", -1, "Checkpoint step to export (default: the latest).")
    flags.DEFINE_bool("best", False, "Export the best-validation checkpoint instead of the latest.")
    flags.mark_flag_as_required("workdir")
    app.run(main)
