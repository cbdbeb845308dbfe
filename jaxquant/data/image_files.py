"""Datasets stored as image files: class folders (`image_folder`) and TinyImageNet.

Images are decoded with PIL: grayscale files as one channel, everything else as
RGB; if a dataset mixes both, grayscale images are repeated to three channels.
All images of a dataset must share one height and width.
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Sequence

import numpy as np
from PIL import Image

from jaxquant.data.dataset import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_GRAY_MODES = ("1", "L", "I", "I;16", "F")

IMAGE_FOLDER_LAYOUT = ("<path>/train/<class>/*.jpg|png|JPEG and <path>/test/<class>/*.jpg|png|JPEG, "
                       "one folder per class (classes are numbered in sorted order of the train folders)")
TINY_IMAGENET_LAYOUT = ("the official tiny-imagenet-200 layout: <path>/wnids.txt, "
                        "<path>/train/<wnid>/images/*.JPEG, <path>/val/images/*.JPEG and "
                        "<path>/val/val_annotations.txt (file name, wnid, box per line)")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _list_images(directory: str) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if _is_image(n) and os.path.isfile(os.path.join(directory, n)))


def _require_dir(path: str, what: str, layout: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"{what}: directory {path} does not exist. Expected {layout}.")


def decode_image(path: str) -> np.ndarray:
    """uint8 [H, W, 1] for grayscale files, [H, W, 3] otherwise; DataError naming the file."""
    try:
        with Image.open(path) as im:
            gray = im.mode in _GRAY_MODES
            if im.mode in ("I", "I;16", "F"):  # 16/32-bit grayscale: rescale isn't defined; clip
                arr = np.clip(np.asarray(im, np.float64), 0, 255).astype(np.uint8)
            else:
                arr = np.asarray(im.convert("L" if gray else "RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image file {path} ({e}); it is corrupt or not an image. "
                        f"Replace or delete it.") from e
    return arr[..., None] if arr.ndim == 2 else arr


def decode_images(paths: Sequence[str], threads: int = 0) -> np.ndarray:
    """Decode equally sized images into uint8 [N, H, W, C]."""
    if not paths:
        return np.zeros((0, 1, 1, 1), np.uint8)
    first = decode_image(paths[0])
    h, w = first.shape[:2]
    out = np.empty((len(paths), h, w, 3), np.uint8)
    any_color = False
    threads = threads or min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for i, (path, img) in enumerate(zip(paths, pool.map(decode_image, paths))):
            if img.shape[:2] != (h, w):
                raise DataError(f"image {path} is {img.shape[1]}x{img.shape[0]} (WxH) but {paths[0]} is "
                                f"{w}x{h}; all images of a dataset must share one size. Resize them "
                                f"beforehand.")
            any_color |= img.shape[2] == 3
            out[i] = img
    return out if any_color else np.ascontiguousarray(out[..., :1])


def image_folder_files(root: str) -> tuple[dict, list[str]]:
    """({split: [(path, label)]}, class names) of an image-folder tree."""
    _require_dir(root, "image_folder dataset", IMAGE_FOLDER_LAYOUT)
    splits = {}
    for split in ("train", "test"):
        _require_dir(os.path.join(root, split), f"image_folder dataset {root}", IMAGE_FOLDER_LAYOUT)
        splits[split] = sorted(d for d in os.listdir(os.path.join(root, split))
                               if os.path.isdir(os.path.join(root, split, d)))
    classes = splits["train"]
    if not classes:
        raise DataError(f"image_folder dataset {root}: {os.path.join(root, 'train')} has no class "
                        f"folders. Expected {IMAGE_FOLDER_LAYOUT}.")
    unknown = sorted(set(splits["test"]) - set(classes))
    if unknown:
        raise DataError(f"image_folder dataset {root}: class folder(s) {', '.join(unknown)} in "
                        f"{os.path.join(root, 'test')} have no counterpart in "
                        f"{os.path.join(root, 'train')}; the test classes must be a subset of the train "
                        f"classes (train has: {', '.join(classes)}).")
    index = {c: i for i, c in enumerate(classes)}
    files = {}
    for split in ("train", "test"):
        items = []
        for c in splits[split]:
            folder = os.path.join(root, split, c)
            images = _list_images(folder)
            if not images:
                raise DataError(f"image_folder dataset {root}: class folder {folder} holds no "
                                f"{'/'.join(IMAGE_EXTENSIONS)} images.")
            items += [(p, index[c]) for p in images]
        files[split] = items
    return files, classes


def tiny_imagenet_files(root: str) -> tuple[dict, list[str]]:
    """({'train'|'test': [(path, label)]}, wnids) of tiny-imagenet-200; val is the test split.

    Classes are the wnids of wnids.txt in sorted order.
    """
    _require_dir(root, "tiny_imagenet dataset", TINY_IMAGENET_LAYOUT)
    wnids_path = os.path.join(root, "wnids.txt")
    annotations = os.path.join(root, "val", "val_annotations.txt")
    for path in (wnids_path, annotations):
        if not os.path.isfile(path):
            raise DataError(f"tiny_imagenet dataset {root}: missing {path}. Expected {TINY_IMAGENET_LAYOUT}.")
    with open(wnids_path) as f:
        wnids = sorted({line.strip() for line in f if line.strip()})
    if not wnids:
        raise DataError(f"tiny_imagenet dataset {root}: {wnids_path} lists no wnids.")
    index = {c: i for i, c in enumerate(wnids)}
    train_dir = os.path.join(root, "train")
    _require_dir(train_dir, f"tiny_imagenet dataset {root}", TINY_IMAGENET_LAYOUT)
    folders = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    extra = sorted(set(folders) - set(index))
    missing = sorted(set(index) - set(folders))
    if extra or missing:
        raise DataError(f"tiny_imagenet dataset {root}: the class folders of {train_dir} do not match "
                        f"{wnids_path}" + (f"; folders not in wnids.txt: {', '.join(extra[:10])}" if extra else "")
                        + (f"; wnids without a train folder: {', '.join(missing[:10])}" if missing else "") + ".")
    train = []
    for c in wnids:
        folder = os.path.join(train_dir, c, "images")
        _require_dir(folder, f"tiny_imagenet dataset {root}", TINY_IMAGENET_LAYOUT)
        images = _list_images(folder)
        if not images:
            raise DataError(f"tiny_imagenet dataset {root}: {folder} holds no images.")
        train += [(p, index[c]) for p in images]
    val_dir = os.path.join(root, "val", "images")
    _require_dir(val_dir, f"tiny_imagenet dataset {root}", TINY_IMAGENET_LAYOUT)
    test = []
    with open(annotations) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DataError(f"{annotations} line {lineno} is malformed: {line.strip()!r}; expected "
                                f"'<file name> <wnid> <x0> <y0> <x1> <y1>'.")
            name, wnid = fields[0], fields[1]
            if wnid not in index:
                raise DataError(f"{annotations} line {lineno}: image {name} is labelled with wnid {wnid}, "
                                f"which is not in {wnids_path}.")
            path = os.path.join(val_dir, name)
            if not os.path.isfile(path):
                raise DataError(f"{annotations} line {lineno} names {path}, which does not exist.")
            test.append((path, index[wnid]))
    unlabelled = sorted(set(_list_images(val_dir)) - {p for p, _ in test})
    if unlabelled:
        raise DataError(f"tiny_imagenet dataset {root}: {len(unlabelled)} validation image(s) have no "
                        f"line in {annotations}, e.g. {unlabelled[0]}.")
    test.sort()
    return {"train": train, "test": test}, wnids
