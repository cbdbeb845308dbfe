"""Datasets: `load(config.dataset) -> Dataset`, plus device-side augmentation.

Sources (config.dataset.name):
- `digits`: scikit-learn's bundled 8x8 digits (the embedded default, no files),
  1437 train / 360 test after a fixed-seed shuffle, pixels 0..16 scaled to 0..255.
- `fashion_mnist`: IDX files (plain or .gz) from config.dataset.data_dir, then
  $JAXQUANT_DATA_DIR, then ~/.cache/jaxquant/datasets (each as is or its
  `fashion-mnist` / `fashion_mnist` subfolder; `python -m jaxquant.data.prepare
  fashion_mnist` puts them there), then /usr/share/datasets/fashion-mnist (Debian
  package dataset-fashion-mnist); else tensorflow-datasets.
- `cifar10`, `cifar100`: the arrays `python -m jaxquant.data.prepare cifar10|cifar100`
  writes (`<dir>/cifar10-npy`, searched in the same three places); else
  tensorflow-datasets, as in-memory arrays.
- `imagenet2012`: tensorflow-datasets, streamed (decoded per batch on the host:
  train = random resized crop of the full image to 224 + flip, torchvision's
  RandomResizedCrop; test = resize to 256 + center crop 224).
- `image_folder:<path>`: `<path>/{train,test}/<class>/*.jpg|png|JPEG`.
- `tiny_imagenet:<path>`: the official tiny-imagenet-200 layout (val = test);
  `tiny_imagenet` alone: the `tiny-imagenet-200` folder that
  `python -m jaxquant.data.prepare tiny_imagenet` extracts, in the same three places.

Augmentation and normalisation (jittable) live in `jaxquant.data.augment`.
File-based sources are decoded once and cached as .npy (see `cache.py`). A
validation split, if asked for, is the last `config.dataset.validation`
examples of train. `mean`/`std` are CIFAR's / ImageNet's published values for
those datasets and TinyImageNet, else computed from the (remaining) train split;
`config.dataset.normalization` ('imagenet' | 'cifar') imposes one of the published
pairs on any 3-channel dataset (ProxQuant's code normalises CIFAR-10 with ImageNet's).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from jaxquant.data import cache
from jaxquant.data.augment import KINDS as AUGMENT_KINDS
from jaxquant.data.dataset import (DataError, Dataset, Split, StreamingSplit,  # noqa: F401
                                   carve_validation, channel_stats)

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
DIGITS_TEST_SIZE = 360
DIGITS_SEED = 0
IMAGENET_SIZE = 224

NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "cifar": (CIFAR_MEAN, CIFAR_STD)}

_NAMES = ("digits", "fashion_mnist", "cifar10", "cifar100", "imagenet2012")
_PATH_NAMES = ("image_folder", "tiny_imagenet")


def names() -> list[str]:
    """Valid values of config.dataset.name (`<path>` stands for a directory)."""
    return list(_NAMES) + ["tiny_imagenet"] + [f"{n}:<path>" for n in _PATH_NAMES]


def load(cfg) -> Dataset:
    """The dataset described by `cfg` (config.dataset: name, data_dir, validation, augment)."""
    name = str(cfg.name)
    data_dir = os.path.expanduser(str(cfg.get("data_dir", "") or ""))
    kind, _, path = name.partition(":")
    if kind == "tiny_imagenet" and not path:
        from jaxquant.data import prepare  # not at the top: `python -m jaxquant.data.prepare` runs it
        path = prepare.find_prepared("tiny_imagenet", data_dir)
        if path is None:
            raise DataError(prepare.not_prepared_message("tiny_imagenet", data_dir) + " Or name an "
                            "extracted copy: --config.dataset.name=tiny_imagenet:/path/to/tiny-imagenet-200.")
    if kind in _PATH_NAMES and path:
        loader = _load_image_folder if kind == "image_folder" else _load_tiny_imagenet
        train, test, num_classes, class_names = loader(os.path.expanduser(path), data_dir)
    elif kind in _NAMES and not path:
        train, test, num_classes, class_names = _LOADERS[kind](cfg, data_dir)
    else:
        hint = (f" A path is required: '{kind}:/path/to/data'." if kind in _PATH_NAMES and not path else "")
        raise DataError(f"unknown dataset {name!r} (config.dataset.name).{hint} Valid datasets: "
                        f"{', '.join(names())}.")
    train, validation = carve_validation(train, cfg.get("validation", 0), name)
    image_shape = tuple(int(d) for d in train.images.shape[1:]) if train.in_memory else train.image_shape
    mean, std = _stats(kind, train, str(cfg.get("normalization", "") or ""), image_shape)
    train, augment = _host_augmentation(train, _augment_kind(cfg, kind, image_shape))
    return Dataset(train=train, validation=validation, test=test, num_classes=int(num_classes),
                   image_shape=image_shape, mean=mean, std=std,
                   augment=augment, class_names=tuple(class_names))


def _host_augmentation(train, augment: str):
    """(train split, device augmentation): a streamed split that augments on the host
    does 'resized_crop_flip' there, from the full image (the device then does nothing);
    for any other kind it reads plainly and the device augments."""
    if train.in_memory or train.augmented_read is None:
        return train, augment
    if augment == "resized_crop_flip":
        return train, "none"
    return train.without_augmentation(), augment


def _stats(kind: str, train, normalization: str = "", image_shape: tuple = ()) -> tuple[tuple, tuple]:
    """Per-channel (mean, std) on the [0, 1] scale: `normalization`'s published pair if
    given ('imagenet' | 'cifar'), else the dataset's own statistics."""
    if normalization:
        if normalization not in NORMALIZATIONS:
            raise DataError(f"unknown normalization {normalization!r} (config.dataset.normalization). "
                            f"Valid: {', '.join(NORMALIZATIONS)}, or '' for the dataset's own "
                            f"statistics.")
        if image_shape and image_shape[-1] != 3:
            raise DataError(f"config.dataset.normalization={normalization!r} gives 3-channel statistics "
                            f"but the images have {image_shape[-1]} channel(s); use '' (the dataset's "
                            f"own statistics).")
        return NORMALIZATIONS[normalization]
    if kind in ("cifar10", "cifar100"):
        return CIFAR_MEAN, CIFAR_STD
    if kind in ("tiny_imagenet", "imagenet2012"):
        return IMAGENET_MEAN, IMAGENET_STD
    return channel_stats(train.images)


def _augment_kind(cfg, kind: str, image_shape: tuple) -> str:
    requested = str(cfg.get("augment", "") or "")
    if requested:
        if requested not in AUGMENT_KINDS:
            raise DataError(f"unknown augmentation {requested!r} (config.dataset.augment). Valid: "
                            f"{', '.join(AUGMENT_KINDS)}, or '' for the dataset's default.")
        return requested
    if kind in ("cifar10", "cifar100"):
        return "crop_flip"
    if kind in ("tiny_imagenet", "imagenet2012"):
        return "resized_crop_flip"
    if kind == "image_folder" and image_shape == (32, 32, 3):
        return "crop_flip"
    return "none"


# ---------------------------------------------------------------- sources

def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (float64 pixels [1797, 8, 8] in 0..16, int labels [1797]).

    Reads the CSV bundled with scikit-learn directly (what `load_digits` reads),
    which avoids importing scikit-learn (seconds); falls back to `load_digits`.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images, digits.target


def _load_digits(cfg, data_dir):
    pixels, labels = digits_arrays()
    images = np.round(pixels * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = labels.astype(np.int32)
    order = np.random.RandomState(DIGITS_SEED).permutation(len(labels))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return (Split(images[train], labels[train]), Split(images[test], labels[test]), 10,
            tuple(str(i) for i in range(10)))


def _load_fashion_mnist(cfg, data_dir):
    from jaxquant.data import idx, prepare
    candidates = prepare.data_dirs(data_dir) + [FASHION_MNIST_SYSTEM_DIR]
    candidates = [c for d in candidates if d
                  for c in (d, os.path.join(d, "fashion-mnist"), os.path.join(d, "fashion_mnist"))]
    directory = idx.find_idx_dir(candidates)
    if directory is None:
        from jaxquant.data import tfds_source
        try:
            return tfds_source.load_small("fashion_mnist", data_dir, cache.cache_root(data_dir))
        except DataError as e:
            looked = ", ".join(dict.fromkeys(candidates))
            raise DataError(f"fashion_mnist: no IDX files found (looked in {looked} for "
                            f"train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                            f"t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]). Download them "
                            f"(30 MB, checksum-verified, no TensorFlow): {prepare.command('fashion_mnist', data_dir)}; "
                            f"or `apt-get install dataset-fashion-mnist`, or set $JAXQUANT_DATA_DIR to "
                            f"a folder that holds them. A copy prepared by tensorflow-datasets is read "
                            f"too, but none was found: {e}") from e
    paths = idx.idx_paths(directory)
    files = [p for pair in paths.values() for p in pair]
    entry = cache.entry_dir(cache.cache_root(data_dir), "fashion_mnist", cache.fingerprint(files))

    def build():
        arrays = {}
        for split, (images, labels) in paths.items():
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = idx.load_idx_split(images, labels, 10)
        return arrays, {}

    arrays, _ = cache.cached(entry, _ARRAY_NAMES, build)
    return (Split(arrays["train_images"], arrays["train_labels"]),
            Split(arrays["test_images"], arrays["test_labels"]), 10, idx.FASHION_MNIST_CLASSES)


def _load_cifar(name):
    """The arrays `prepare` wrote, else a tfds-prepared copy, else how to prepare it."""
    def load_fn(cfg, data_dir):
        from jaxquant.data import prepare
        folder = prepare.find_prepared(name, data_dir)
        if folder is not None:
            return prepare.read_arrays(name, folder)
        from jaxquant.data import tfds_source
        try:
            return tfds_source.load_small(name, data_dir, cache.cache_root(data_dir))
        except DataError as e:
            raise DataError(prepare.not_prepared_message(name, data_dir, str(e))) from e
    return load_fn


def _load_imagenet(cfg, data_dir):
    from jaxquant.data import tfds_source
    return tfds_source.load_streaming("imagenet2012", data_dir, int(cfg.get("image_size", IMAGENET_SIZE)))


_ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")


def _load_files(root: str, data_dir: str, kind: str, list_files):
    from jaxquant.data import image_files
    files, classes = list_files(root)
    paths = [p for split in ("train", "test") for p, _ in files[split]]
    entry = cache.entry_dir(cache.cache_root(data_dir), f"{kind}_{os.path.basename(os.path.abspath(root))}",
                            cache.fingerprint(paths))

    def build():
        arrays = {}
        for split in ("train", "test"):
            arrays[f"{split}_images"] = image_files.decode_images([p for p, _ in files[split]])
            arrays[f"{split}_labels"] = np.array([c for _, c in files[split]], np.int32)
        channels = {arrays["train_images"].shape[-1], arrays["test_images"].shape[-1]}
        if channels == {1, 3}:  # one split is all grayscale, the other has colour: repeat gray
            for split in ("train", "test"):
                if arrays[f"{split}_images"].shape[-1] == 1:
                    arrays[f"{split}_images"] = np.repeat(arrays[f"{split}_images"], 3, axis=-1)
        if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
            raise DataError(f"{kind} dataset {root}: train images are {arrays['train_images'].shape[1:]} "
                            f"(HWC) but test images are {arrays['test_images'].shape[1:]}, e.g. "
                            f"{files['test'][0][0]}; both splits must share one size.")
        return arrays, {"classes": list(classes)}

    arrays, _ = cache.cached(entry, _ARRAY_NAMES, build)
    return (Split(arrays["train_images"], arrays["train_labels"]),
            Split(arrays["test_images"], arrays["test_labels"]), len(classes), tuple(classes))


def _load_image_folder(root, data_dir):
    from jaxquant.data import image_files
    return _load_files(root, data_dir, "image_folder", image_files.image_folder_files)


def _load_tiny_imagenet(root, data_dir):
    from jaxquant.data import image_files, prepare
    if not os.path.exists(root):
        parent, base = os.path.split(os.path.abspath(root))
        where = (f"{prepare.command('tiny_imagenet', parent)} (it extracts the official archive "
                 f"there)" if base == prepare.SOURCES["tiny_imagenet"].folder else
                 f"{prepare.command('tiny_imagenet', '<DIR>')} and name <DIR>/tiny-imagenet-200")
        raise DataError(f"tiny_imagenet dataset: {root} does not exist. Download it (248 MB, "
                        f"checksum-verified) with {where}. Expected {image_files.TINY_IMAGENET_LAYOUT}.")
    return _load_files(root, data_dir, "tiny_imagenet", image_files.tiny_imagenet_files)


_LOADERS = {
    "digits": _load_digits,
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": _load_cifar("cifar10"),
    "cifar100": _load_cifar("cifar100"),
    "imagenet2012": _load_imagenet,
}
