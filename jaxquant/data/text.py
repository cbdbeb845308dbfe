"""Byte-level text corpora for language models: files -> uint8 bytes -> train/validation/test
splits by position -> random contiguous windows of seq_len + 1 bytes (inputs, next-byte targets).

Sources:
- `text_file:<path>`: `<path>` is a file or a directory (its regular files, recursively, in
  sorted path order; symbolic links are skipped so that aliases are not read twice); several
  paths are separated by commas. Bytes are read as they are (UTF-8 text stays its bytes, so
  the vocabulary is the 256 byte values and no tokenizer is needed).
- `fortunes`: Debian's `fortunes` package (/usr/share/games/fortunes, ~2.6 MB of English
  text), without its `.dat` index files and `.u8` aliases: a real corpus available offline.

Split by position, per file: the first (1 - validation - test) of every file's bytes go to
train, the next `validation` fraction to validation, the last `test` fraction to test (defaults
0.05 and 0.05), and each split concatenates its pieces in file order. The byte ranges of the
splits never overlap, and every split draws from every file (no split is a different author
or topic). A window may straddle two files' pieces within a split.

Batches (`sample_windows`, jittable, on the device): random starts s ~ U{0, .., n - T - 1},
window = bytes[s : s + T + 1], inputs = window[:-1] (uint8, (B, T)), targets = window[1:]
(int32, (B, T)). Evaluation (`TextSplit.get_batch`) uses the non-overlapping windows
starting at 0, T, 2T, ..., which score every byte of the split but the first (and a tail of
fewer than T bytes) exactly once; the trainer trains on random windows and evaluates on
these. Bits per byte = mean next-byte cross-entropy (nats) / ln 2.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxquant.data.dataset import DataError, Dataset

FORTUNES_DIR = "/usr/share/games/fortunes"
FORTUNES_SKIP = (".dat", ".u8")
VOCAB = 256


def text_files(path: str, skip_suffixes: Sequence[str] = ()) -> list[str]:
    """The files `path` names: itself, or a directory's regular files (recursive, sorted,
    no symbolic links, none ending in `skip_suffixes`); several paths separated by commas."""
    files = []
    for p in (os.path.expanduser(s.strip()) for s in str(path).split(",") if s.strip()):
        if os.path.isfile(p):
            files.append(p)
        elif os.path.isdir(p):
            found = sorted(os.path.join(root, f) for root, _, names in os.walk(p) for f in names)
            files += [f for f in found if not os.path.islink(f) and os.path.isfile(f)
                      and not f.endswith(tuple(skip_suffixes))]
        else:
            raise DataError(f"text dataset: {p!r} is neither a file nor a directory "
                            f"(config.dataset.name='text_file:<path>[,<path>...]').")
    if not files:
        raise DataError(f"text dataset: no files found under {path!r}.")
    return files


def split_bytes(files: Sequence[str], validation: float = 0.05, test: float = 0.05
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) uint8 arrays: every file split by position (module docstring).

    A file of n bytes gives train [0, a), validation [a, b), test [b, n) with
    a = n - round(n (validation + test)), b = n - round(n test).
    """
    for value, key in ((validation, "validation"), (test, "test")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DataError(f"text dataset: the {key} fraction must be a number in [0, 1), got {value!r}.")
    if validation + test >= 1:
        raise DataError(f"text dataset: validation ({validation}) + test ({test}) fractions leave "
                        f"no training bytes; their sum must be below 1.")
    parts = ([], [], [])
    for f in files:
        with open(f, "rb") as fh:
            raw = np.frombuffer(fh.read(), np.uint8)
        n = len(raw)
        a, b = n - int(round(n * (validation + test))), n - int(round(n * test))
        for part, piece in zip(parts, (raw[:a], raw[a:b], raw[b:])):
            part.append(piece)
    return tuple(np.concatenate(p) if p else np.zeros(0, np.uint8) for p in parts)


def sample_windows(data: jax.Array, key: jax.Array, batch: int, seq_len: int
                   ) -> tuple[jax.Array, jax.Array]:
    """`batch` random windows of `seq_len` + 1 consecutive bytes of `data` (1-D uint8), jittable.

    Returns (inputs uint8 (batch, seq_len), targets int32 (batch, seq_len)); targets[:, t]
    is the byte after inputs[:, t].
    """
    starts = jax.random.randint(key, (batch,), 0, data.shape[0] - seq_len)
    window = data[starts[:, None] + jnp.arange(seq_len + 1)]
    return window[:, :-1], window[:, 1:].astype(jnp.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class TextSplit:
    """The bytes of one split (`data`, uint8 [n]) cut into windows of `seq_len` predictions.

    len(split) = the number of non-overlapping windows, (n - 1) // seq_len;
    `get_batch(indices)` -> (inputs uint8 [B, T], targets int32 [B, T]) of windows i at
    bytes [i T, i T + T + 1); `sample(key, batch)` draws random windows (`sample_windows`).
    `images` / `labels`: all those windows' inputs and targets (evaluation's fixed windows).
    The trainer trains on random windows: it keeps `sample_source` (the bytes) on the
    device and calls `sample(key, batch, source)` inside its jitted step; an "epoch" is
    len(split) / batch steps.
    """
    data: np.ndarray
    seq_len: int
    in_memory: bool = dataclasses.field(default=True, init=False)

    def __len__(self) -> int:
        return max(len(self.data) - 1, 0) // self.seq_len

    def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, np.int64)[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        window = self.data[idx]
        return window[:, :-1], window[:, 1:].astype(np.int32)

    @functools.cached_property
    def images(self) -> np.ndarray:
        return self.get_batch(np.arange(len(self)))[0]

    @functools.cached_property
    def labels(self) -> np.ndarray:
        return self.get_batch(np.arange(len(self)))[1]

    @property
    def sample_source(self) -> np.ndarray:
        """What `sample` draws from (the trainer puts it on the device once): the bytes."""
        return self.data

    def sample(self, key: jax.Array, batch: int, source: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
        """`batch` random windows of `source` (default: this split's bytes), jittable."""
        return sample_windows(jnp.asarray(self.data) if source is None else source, key, batch,
                              self.seq_len)


class TextDataset(NamedTuple):
    """A byte corpus split three ways; `vocab` = 256 byte values."""
    train: TextSplit
    validation: TextSplit
    test: TextSplit
    seq_len: int
    files: tuple
    vocab: int = VOCAB


def load(name: str, seq_len: int, validation: float = 0.05, test: float = 0.05) -> TextDataset:
    """The corpus `name` ('text_file:<path>[,<path>...]' or 'fortunes'), split and windowed."""
    kind, _, path = str(name).partition(":")
    if kind == "fortunes" and not path:
        if not os.path.isdir(FORTUNES_DIR):
            raise DataError(f"fortunes: {FORTUNES_DIR} is missing; install Debian's corpus with "
                            f"`apt-get install fortunes`, or point 'text_file:<path>' at your own text.")
        files = text_files(FORTUNES_DIR, FORTUNES_SKIP)
    elif kind == "text_file" and path:
        files = text_files(path)
    else:
        raise DataError(f"unknown text dataset {name!r}: use 'text_file:<path>[,<path>...]' or "
                        f"'fortunes'.")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise DataError(f"text dataset: seq_len must be a positive integer, got {seq_len!r}.")
    splits = split_bytes(files, validation, test)
    for part, key, frac in zip(splits, ("train", "validation", "test"),
                               (1 - validation - test, validation, test)):
        if len(part) < seq_len + 1 and (key == "train" or frac > 0):
            raise DataError(f"text dataset {name!r}: the {key} split has {len(part)} bytes, fewer "
                            f"than one window of seq_len + 1 = {seq_len + 1}; use a shorter "
                            f"seq_len, a larger {key} fraction, or more text.")
    return TextDataset(*(TextSplit(p, seq_len) for p in splits), seq_len=seq_len, files=tuple(files))


def dataset(name: str, seq_len: int, validation: float = 0.05, test: float = 0.05) -> Dataset:
    """The corpus as the trainer's `Dataset`: windows as (tokens, next-byte targets), 256
    classes, no normalisation (empty mean/std), no augmentation; image_shape = (seq_len,)."""
    ds = load(name, seq_len, validation, test)
    return Dataset(train=ds.train, validation=ds.validation if validation else None, test=ds.test,
                   num_classes=VOCAB, image_shape=(seq_len,), mean=(), std=(), augment="none")


def is_text(name: str) -> bool:
    """Whether `config.dataset.name` names a text corpus of this module."""
    kind, _, path = str(name).partition(":")
    return (kind == "text_file" and bool(path)) or name == "fortunes"


def bits_per_byte(mean_nats: float) -> float:
    """Mean next-byte cross-entropy in nats -> bits per byte (divide by ln 2)."""
    return float(mean_nats) / math.log(2.0)
