"""IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.

Layout: 2 zero bytes, a type byte (0x08 = uint8), the number of dimensions d,
then d big-endian uint32 sizes, then the data in C order.
"""
from __future__ import annotations

import gzip
import os
import zlib
from typing import Optional

import numpy as np

from jaxquant.data.dataset import DataError

_UINT8 = 0x08

# split -> (images file, labels file), without the optional .gz suffix.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")


def read_idx(path: str) -> np.ndarray:
    """The uint8 array stored in IDX file `path` (gzipped if it ends in .gz)."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"IDX file {path} is corrupt or truncated ({e}); download it again.") from e
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e}.") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; "
                        f"expected 0000 followed by the type byte and the number of dimensions).")
    if raw[2] != _UINT8:
        raise DataError(f"IDX file {path} holds type 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(f"IDX file {path} is truncated or padded: its header declares shape {shape} "
                        f"({expected} bytes of data) but it holds {len(raw) - header}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def find_idx_dir(candidates, files=FASHION_MNIST_FILES) -> Optional[str]:
    """The first directory among `candidates` holding every IDX file (plain or .gz)."""
    needed = [f for pair in files.values() for f in pair]
    for d in candidates:
        if d and all(_resolve(d, f) for f in needed):
            return d
    return None


def _resolve(directory: str, stem: str) -> Optional[str]:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def idx_paths(directory: str, files=FASHION_MNIST_FILES) -> dict:
    """split -> (images path, labels path) in `directory`."""
    return {split: tuple(_resolve(directory, f) for f in pair) for split, pair in files.items()}


def load_idx_split(images_path: str, labels_path: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, H, W, 1], int32 labels [N]) from a pair of IDX files."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"IDX images file {images_path} has shape {images.shape}; expected [N, H, W].")
    if labels.ndim != 1:
        raise DataError(f"IDX labels file {labels_path} has shape {labels.shape}; expected [N].")
    if len(images) != len(labels):
        raise DataError(f"image/label count mismatch: {images_path} holds {len(images)} images but "
                        f"{labels_path} holds {len(labels)} labels; the two files do not belong together.")
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(f"IDX labels file {labels_path} holds label {int(labels.max())}, outside "
                        f"0..{num_classes - 1}.")
    return images[..., None], labels.astype(np.int32)
