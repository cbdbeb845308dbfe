"""Dataset containers: in-memory and streaming splits, the `Dataset` tuple, `DataError`.

Every split has `in_memory`, `__len__` and `get_batch(indices)`, so the trainer
can treat both kinds alike; in-memory splits also expose `images` (uint8 NHWC)
and `labels` (int32) so small datasets can be put on the device whole.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np

from jaxquant.errors import UserError


class DataError(UserError):
    """A dataset cannot be loaded: unknown name, missing path, corrupt file, label mismatch."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """An in-memory split: `images` uint8 [N, H, W, C], `labels` int32 [N]."""
    images: np.ndarray
    labels: np.ndarray
    in_memory: bool = dataclasses.field(default=True, init=False)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise TypeError(f"Split images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int32 or self.labels.shape != self.images.shape[:1]:
            raise TypeError(f"Split labels must be int32 [{len(self.images)}], got "
                            f"{self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [B, H, W, C], labels int32 [B]) at `indices`."""
        indices = np.asarray(indices)
        return self.images[indices], self.labels[indices]

    def take(self, start: int, stop: int) -> "Split":
        """Examples [start, stop) as a new split (views, no copy)."""
        return Split(self.images[start:stop], self.labels[start:stop])


class StreamingSplit:
    """A split decoded on the host batch by batch (ImageNet-size data).

    `read(i) -> (uint8 image [H, W, C] of the split's fixed size, int label)`
    reads example `i` of the underlying source; `indices` selects and orders the
    examples of this split within the source (validation carving uses it).
    `augmented_read(i, rng)`, if given, reads it with random augmentation
    (numpy Generator `rng`), used by `get_batch(..., seed=...)` for training.
    """
    in_memory = False

    def __init__(self, read: Callable[[int], tuple[np.ndarray, int]], indices: Sequence[int],
                 image_shape: tuple[int, int, int],
                 augmented_read: Optional[Callable[[int, np.random.Generator],
                                                   tuple[np.ndarray, int]]] = None):
        self._read = read
        self._indices = np.asarray(indices, dtype=np.int64)
        self.image_shape = tuple(image_shape)
        self.augmented_read = augmented_read
        self._pool = None  # threads decoding a batch (PIL releases the GIL)

    def __len__(self) -> int:
        return len(self._indices)

    def get_batch(self, indices, seed: Optional[Sequence[int]] = None) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [B, H, W, C], labels int32 [B]) at `indices` (0 <= i < len(self)).

        With `seed` (ints, e.g. (run seed, step)) and an `augmented_read`, source
        example j is read by augmented_read(j, np.random.default_rng([*seed, j])):
        the same batch gives the same images on any process, after a resume too.
        """
        indices = np.asarray(indices, dtype=np.int64)
        images = np.empty((len(indices),) + self.image_shape, np.uint8)
        labels = np.empty((len(indices),), np.int32)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(min(16, (os.cpu_count() or 1) + 2))
        source = [int(self._indices[i]) for i in indices]
        if seed is not None and self.augmented_read is not None:
            seed = [int(s) for s in np.atleast_1d(seed)]
            read = lambda j: self.augmented_read(j, np.random.default_rng([*seed, j]))  # noqa: E731
        else:
            read = self._read
        for k, (image, label) in enumerate(self._pool.map(read, source)):
            images[k], labels[k] = image, label
        return images, labels

    def take(self, start: int, stop: int) -> "StreamingSplit":
        return StreamingSplit(self._read, self._indices[start:stop], self.image_shape, self.augmented_read)

    def without_augmentation(self) -> "StreamingSplit":
        """The same examples, always read by the plain `read`."""
        return StreamingSplit(self._read, self._indices, self.image_shape)


AnySplit = Union[Split, StreamingSplit]


class Dataset(NamedTuple):
    """A loaded dataset. `mean`/`std` are per channel on the [0, 1] pixel scale."""
    train: AnySplit
    validation: Optional[AnySplit]
    test: AnySplit
    num_classes: int
    image_shape: tuple  # (H, W, C)
    mean: tuple
    std: tuple
    augment: str
    class_names: tuple = ()


def carve_validation(train: AnySplit, n: int, name: str) -> tuple[AnySplit, Optional[AnySplit]]:
    """Split off the last `n` training examples as validation (n = 0: no validation)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise DataError(f"config.dataset.validation must be a non-negative integer (the number of "
                        f"training examples held out), got {n!r}.")
    if n == 0:
        return train, None
    if n >= len(train):
        raise DataError(f"config.dataset.validation={n} leaves no training data: dataset {name!r} "
                        f"has {len(train)} training examples. Use a smaller validation size or 0.")
    cut = len(train) - n
    return train.take(0, cut), train.take(cut, len(train))


def channel_stats(images: np.ndarray) -> tuple[tuple, tuple]:
    """Per-channel mean and std of uint8 NHWC `images` on the [0, 1] scale (exact, from histograms)."""
    flat = images.reshape(-1, images.shape[-1])
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    chunk = 1 << 20  # bincount widens its input to int64: in slices, not all at once
    for c in range(flat.shape[1]):
        counts = np.zeros(256, np.int64)
        for start in range(0, len(flat), chunk):
            counts += np.bincount(flat[start:start + chunk, c], minlength=256)
        hist = counts.astype(np.float64)
        p = hist / max(hist.sum(), 1.0)
        mean = float(p @ values)
        std = float(np.sqrt(max(p @ np.square(values - mean), 0.0)))
        means.append(mean / 255.0)
        stds.append(std / 255.0 if std > 0 else 1.0)  # a constant channel: leave it unscaled
    return tuple(means), tuple(stds)
