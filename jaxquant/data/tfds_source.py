"""Datasets prepared by tensorflow-datasets, read with `tfds.data_source` (no TensorFlow).

For CIFAR, Fashion-MNIST and TinyImageNet, `python -m jaxquant.data.prepare NAME`
needs neither TensorFlow nor tfds, and `jaxquant.data.load` reads its output first;
this module serves copies already prepared by tfds, and ImageNet. Preparing with
tfds (download + conversion) needs TensorFlow and a network:
`pip install 'jaxquant[tfds]'` then
`tfds build <name> --file_format=array_record [--data_dir DIR]`. Reading a
prepared one only needs the `tensorflow_datasets` package: records are decoded
with numpy/PIL. Small sets (CIFAR, Fashion-MNIST) are converted to in-memory
arrays; ImageNet is read example by example and resized on the host.
"""
from __future__ import annotations

import hashlib
import os
from typing import Optional

import numpy as np
from PIL import Image

from jaxquant.data import cache
from jaxquant.data.dataset import DataError, Split, StreamingSplit


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError("reading tensorflow-datasets datasets needs the tensorflow_datasets package: "
                        "pip install 'jaxquant[tfds]'.") from e
    return tfds


def _prepare_hint(name: str, data_dir: Optional[str]) -> str:
    where = f" --data_dir {data_dir}" if data_dir else ""
    return (f"To prepare it with tfds instead (needs TensorFlow and a network): pip install "
            f"'jaxquant[tfds]' && tfds build {name} --file_format=array_record{where}; or point "
            f"config.dataset.data_dir (or $JAXQUANT_DATA_DIR / $TFDS_DATA_DIR) at the tfds data "
            f"directory that holds it.")


def data_source(name: str, split: str, data_dir: Optional[str]):
    """`tfds.data_source(name, split=split)` with a DataError if it is not prepared."""
    tfds = _tfds()
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as e:  # tfds raises assorted types (NotImplementedError, AssertionError, ...)
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 300 else reason[:300] + "..."
        raise DataError(f"tensorflow-datasets dataset {name!r} (split {split!r}) is not available in "
                        f"array_record format under {data_dir or 'the default tfds data dir'} "
                        f"(tfds: {type(e).__name__}: {reason}). " + _prepare_hint(name, data_dir)) from e


def _label_info(source) -> tuple[int, tuple]:
    feature = source.dataset_info.features["label"]
    return int(feature.num_classes), tuple(feature.names)


def _to_arrays(source, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    n = len(source)
    first = np.asarray(source[0]["image"]) if n else np.zeros((1, 1, 1), np.uint8)
    images = np.empty((n,) + first.shape, np.uint8)
    labels = np.empty((n,), np.int32)
    for i in range(n):
        ex = source[i]
        image = np.asarray(ex["image"])
        if image.shape != first.shape:
            raise DataError(f"tfds {name} split {split}: example {i} has image shape {image.shape}, "
                            f"example 0 has {first.shape}; an in-memory dataset needs one size.")
        images[i] = image
        labels[i] = ex["label"]
    return images, labels


def load_small(name: str, data_dir: str, cache_root: str) -> tuple[Split, Split, int, tuple]:
    """(train, test, num_classes, class names) of a small tfds dataset, as arrays.

    Converted arrays are cached, keyed by the prepared dataset's directory, when
    the source holds the number of examples its metadata declares (so a mocked
    source is never cached).
    """
    splits = {}
    num_classes, class_names = 0, ()
    for split in ("train", "test"):
        source = data_source(name, split, data_dir)
        num_classes, class_names = _label_info(source)
        info = source.dataset_info
        declared = info.splits[split].num_examples if split in info.splits else None
        build = lambda: (dict(zip(("images", "labels"), _to_arrays(source, name, split))), {})
        if declared == len(source):
            key = _hash(os.path.abspath(str(info.data_dir)))
            entry = cache.entry_dir(cache_root, f"tfds_{info.full_name}_{split}", key)
            arrays, _ = cache.cached(entry, ("images", "labels"), build)
        else:
            arrays, _ = build()
        labels = arrays["labels"].astype(np.int32)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"tfds {name} split {split}: label {int(labels.max())} outside 0..{num_classes - 1}.")
        splits[split] = Split(arrays["images"], labels)
    return splits["train"], splits["test"], num_classes, class_names


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resize_center_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """Resize the shorter side to round(size / crop_fraction) (bilinear), then center-crop size x size."""
    h, w = image.shape[:2]
    short = max(size, int(round(size / crop_fraction)))
    scale = short / min(h, w)
    new_w, new_h = max(size, int(round(w * scale))), max(size, int(round(h * scale)))
    pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    pil = pil.resize((new_w, new_h), Image.BILINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = np.asarray(pil)[top:top + size, left:left + size]
    return out[..., None] if out.ndim == 2 else out


def _rgb(image) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def load_streaming(name: str, data_dir: str, image_size: int, test_split: str = "validation"
                   ) -> tuple[StreamingSplit, StreamingSplit, int, tuple]:
    """(train, test, num_classes, class names) of a large tfds dataset, decoded per batch.

    Plain reads resize each image (shorter side image_size / 0.875, 256 for 224)
    and center-crop image_size x image_size x 3 on the host (the test
    transform). The train split also reads with augmentation: torchvision's
    random resized crop of the full image to image_size, plus a random flip
    (`augment.host_resized_crop_flip`).
    """
    from jaxquant.data.augment import host_resized_crop_flip
    out = {}
    num_classes, class_names = 0, ()
    for split, tfds_split in (("train", "train"), ("test", test_split)):
        source = data_source(name, tfds_split, data_dir)
        num_classes, class_names = _label_info(source)

        def read(i, source=source):
            ex = source[i]
            return resize_center_crop(_rgb(ex["image"]), image_size), int(ex["label"])

        def augmented_read(i, rng, source=source):
            ex = source[i]
            return host_resized_crop_flip(_rgb(ex["image"]), image_size, rng), int(ex["label"])

        out[split] = StreamingSplit(read, np.arange(len(source)), (image_size, image_size, 3),
                                    augmented_read if split == "train" else None)
    return out["train"], out["test"], num_classes, class_names
