"""Decoded-array cache: one folder of `.npy` files per source, keyed by its path.

Arrays are written with `np.save` and read with `np.load(allow_pickle=False)`;
metadata (class names) goes in a small JSON file. A cache entry whose key
(source path plus file sizes and modification times) no longer matches is
never read, so editing the source data invalidates it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import Iterable, Optional

import numpy as np

_NPY_SUFFIX = ".npy"
_META = "meta.json"


def cache_root(data_dir: str) -> str:
    """Where decoded arrays are cached: `<data_dir>/jaxquant_cache`, else
    `$JAXQUANT_DATA_DIR/jaxquant_cache`, else `~/.cache/jaxquant`."""
    base = data_dir or os.environ.get("JAXQUANT_DATA_DIR", "")
    if base:
        return os.path.join(os.path.expanduser(base), "jaxquant_cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "jaxquant")


def fingerprint(paths: Iterable[str]) -> str:
    """A hash of the files' absolute paths, sizes and modification times."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def entry_dir(root: str, name: str, key: str) -> str:
    """The cache folder of source `name` (a readable label) with key `key`."""
    label = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[-60:]
    return os.path.join(root, f"{label}-{key}")


def load(directory: str, names: Iterable[str]) -> Optional[tuple[dict, dict]]:
    """({name: array}, meta) from a cache folder, or None if absent or unreadable."""
    try:
        with open(os.path.join(directory, _META)) as f:
            meta = json.load(f)
        arrays = {n: np.load(os.path.join(directory, n + _NPY_SUFFIX), allow_pickle=False)
                  for n in names}
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # truncated or foreign file: rebuild it
        logging.warning("ignoring unreadable data cache %s (%s); decoding the source again", directory, e)
        return None
    return arrays, meta


def save(directory: str, arrays: dict, meta: dict) -> None:
    """Write arrays and meta atomically (files first, meta last); warn if not writable."""
    try:
        os.makedirs(directory, exist_ok=True)
        for n, a in arrays.items():
            _atomic_write(directory, n + _NPY_SUFFIX, lambda f, a=a: np.save(f, a, allow_pickle=False))
        _atomic_write(directory, _META, lambda f: f.write(json.dumps(meta).encode()))
    except OSError as e:
        logging.warning("could not cache decoded data in %s (%s); it will be decoded again next time",
                        directory, e)


def _atomic_write(directory: str, filename: str, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=filename + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, filename))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cached(directory: str, names: Iterable[str], build) -> tuple[dict, dict]:
    """The arrays `names` and meta from `directory`, or `build()` them and save them there."""
    names = list(names)
    hit = load(directory, names)
    if hit is not None:
        return hit
    arrays, meta = build()
    save(directory, arrays, meta)
    return arrays, meta
