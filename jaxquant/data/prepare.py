"""`python -m jaxquant.data.prepare NAME [--data_dir DIR]`: download and prepare a public dataset.

No TensorFlow at any point. NAME is one of `SOURCES`: cifar10, cifar100,
fashion_mnist, tiny_imagenet. The official archives (URL and the MD5 published
with them, in `SOURCES`) are downloaded into `DIR/downloads/` — resumable and
checksum-verified, with a progress bar (`jaxquant.data.download`) — and turned
into the folder that `jaxquant.data.load` reads first:

- cifar10 / cifar100: the *binary version* archives. Each record is the label
  byte(s) (CIFAR-100: coarse, then fine) followed by 3072 pixel bytes, the 32x32
  red, green and blue planes in row-major order; parsed with numpy (no pickle).
  They become `DIR/cifar10-npy/` (`DIR/cifar100-npy/`): `{train,test}_images.npy`
  (uint8 [N, 32, 32, 3]), `{train,test}_labels.npy` (int32; CIFAR-100's fine
  label) and `meta.json` (class names in label order).
- fashion_mnist: the four IDX .gz files, as published, in `DIR/fashion-mnist/`.
- tiny_imagenet: tiny-imagenet-200.zip extracted to `DIR/tiny-imagenet-200/`.

A dataset folder appears only when complete: it is built under a temporary name
in DIR and renamed at the end; a failure removes the temporary folder. The
archives are deleted once the folder is in place (kept with --keep_archives).
DIR is --data_dir, else $JAXQUANT_DATA_DIR, else ~/.cache/jaxquant/datasets —
`load` searches config.dataset.data_dir, then those two. ImageNet is not a public
download: prepare it yourself (see `IMAGENET_HELP`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tarfile
import zipfile
from typing import Callable, Optional, Sequence

import numpy as np

from jaxquant.data import cache
from jaxquant.data.dataset import DataError, Split
from jaxquant.errors import UserError

EXIT_USER_ERROR = 2
DOWNLOADS = "downloads"
ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")
CIFAR_RECORD_PIXELS = 3 * 32 * 32


@dataclasses.dataclass(frozen=True)
class Archive:
    url: str
    md5: str  # as published by the dataset's authors

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Source:
    archives: tuple
    folder: str                       # the prepared folder's name inside the data dir
    markers: tuple                    # files (relative to the folder) a complete folder holds
    size: str                         # download size, for messages
    build: Callable                   # (dict filename -> archive path, work dir) -> built folder


def _fashion_mnist_url(name: str) -> str:
    return f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}"


IMAGENET_HELP = ("ImageNet (imagenet2012) is not a public download: get ILSVRC2012_img_train.tar and "
                 "ILSVRC2012_img_val.tar from https://image-net.org (after registering), then prepare "
                 "them with tensorflow-datasets (pip install 'jaxquant[tfds]' && tfds build imagenet2012 "
                 "--manual_dir <folder with the tars> --file_format=array_record), or use "
                 "--config.dataset.name=image_folder:<path> with <path>/{train,test}/<class>/*.JPEG.")


def default_data_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "jaxquant", "datasets")


def data_dirs(data_dir: str = "") -> list[str]:
    """Where prepared datasets are looked for, in order: `data_dir` (config.dataset.data_dir),
    $JAXQUANT_DATA_DIR, `default_data_dir()`."""
    dirs = [data_dir, os.environ.get("JAXQUANT_DATA_DIR", ""), default_data_dir()]
    return list(dict.fromkeys(os.path.expanduser(d) for d in dirs if d))


def target_dir(data_dir: str = "") -> str:
    """Where `prepare` writes: `data_dir`, else $JAXQUANT_DATA_DIR, else the default."""
    return data_dirs(data_dir)[0]


def is_complete(name: str, folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, m)) for m in SOURCES[name].markers)


def find_prepared(name: str, data_dir: str = "") -> Optional[str]:
    """The first complete prepared folder of dataset `name` in `data_dirs(data_dir)`, or None."""
    for d in data_dirs(data_dir):
        folder = os.path.join(d, SOURCES[name].folder)
        if is_complete(name, folder):
            return folder
    return None


def command(name: str, data_dir: str = "") -> str:
    return f"python -m jaxquant.data.prepare {name}" + (f" --data_dir {data_dir}" if data_dir else "")


def not_prepared_message(name: str, data_dir: str, tfds_reason: str = "") -> str:
    """The DataError text for a dataset found nowhere: the prepare command first."""
    looked = ", ".join(os.path.join(d, SOURCES[name].folder) for d in data_dirs(data_dir))
    msg = (f"dataset {name!r} is not prepared (looked for {looked}). Prepare it once — it downloads "
           f"the official {SOURCES[name].size} archive and verifies its checksum, no TensorFlow: "
           f"{command(name, data_dir)}")
    if not data_dir:
        msg += " (add --data_dir DIR to put it elsewhere, then pass --config.dataset.data_dir=DIR)"
    msg += "."
    if tfds_reason:
        msg += f" A copy prepared by tensorflow-datasets is read too, but none was found: {tfds_reason}"
    return msg


# ---------------------------------------------------------------- reading prepared CIFAR

def read_arrays(name: str, folder: str) -> tuple[Split, Split, int, tuple]:
    """(train, test, num_classes, class names) of a prepared `<name>-npy` folder."""
    hit = cache.load(folder, ARRAY_NAMES)
    if hit is None:
        raise DataError(f"the prepared {name} in {folder} is unreadable; prepare it again: "
                        f"{command(name, os.path.dirname(folder))} --force")
    arrays, meta = hit
    classes = tuple(meta.get("classes", ()))
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"].astype(np.int32)
        if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
            raise DataError(f"{folder}: {split} images {images.dtype} {images.shape} and labels "
                            f"{labels.shape} are not uint8 [N, H, W, C] and [N]; prepare it again with "
                            f"--force.")
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{folder}: {split} label {int(labels.max())} outside 0..{len(classes) - 1}.")
        splits.append(Split(images, labels))
    return splits[0], splits[1], len(classes), classes


# ---------------------------------------------------------------- building

def cifar_records(raw: bytes, label_bytes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 32, 32, 3], uint8 last-label-byte [N]) of CIFAR binary records."""
    record = label_bytes + CIFAR_RECORD_PIXELS
    if len(raw) % record:
        raise DataError(f"{what} holds {len(raw)} bytes, not a whole number of {record}-byte CIFAR "
                        f"records; the archive is not the CIFAR binary version.")
    table = np.frombuffer(raw, np.uint8).reshape(-1, record)
    images = table[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), table[:, label_bytes - 1].copy()


def _cifar_builder(top: str, train: Sequence[str], test: str, names_file: str, label_bytes: int,
                   num_classes: int):
    def build(paths: dict, work: str) -> str:
        (path,) = paths.values()
        wanted = {f"{top}/{m}": m for m in (*train, test, names_file)}
        raw = {}
        try:
            with tarfile.open(path, "r:gz") as tar:
                for member in tar:  # one pass: the files are read in archive order (no gzip seeks)
                    if member.name in wanted and member.isfile():
                        raw[wanted[member.name]] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"cannot read the archive {path} ({e}); delete it and rerun.") from e
        missing = [f"{top}/{m}" for m in wanted.values() if m not in raw]
        if missing:
            raise DataError(f"{path} has no {', '.join(missing)}; it is not the CIFAR binary archive.")
        parts = {"train": [cifar_records(raw[m], label_bytes, m) for m in train],
                 "test": [cifar_records(raw[test], label_bytes, test)]}
        classes = [line.strip() for line in raw[names_file].decode().splitlines() if line.strip()]
        if len(classes) != num_classes:
            raise DataError(f"{path}: {names_file} lists {len(classes)} class names, expected {num_classes}.")
        out = os.path.join(work, "arrays")
        os.makedirs(out)
        for split, chunks in parts.items():
            labels = np.concatenate([lab for _, lab in chunks]).astype(np.int32)
            if labels.size and labels.max() >= num_classes:
                raise DataError(f"{path}: a {split} label is {int(labels.max())}, outside 0..{num_classes - 1}.")
            np.save(os.path.join(out, f"{split}_images.npy"), np.concatenate([im for im, _ in chunks]),
                    allow_pickle=False)
            np.save(os.path.join(out, f"{split}_labels.npy"), labels, allow_pickle=False)
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump({"classes": classes, "source": os.path.basename(path)}, f)
        return out
    return build


def _build_fashion_mnist(paths: dict, work: str) -> str:
    out = os.path.join(work, "idx")
    os.makedirs(out)
    for filename, path in paths.items():
        shutil.copyfile(path, os.path.join(out, filename))
    return out


def _build_tiny_imagenet(paths: dict, work: str) -> str:
    from jaxquant.data import image_files
    (path,) = paths.values()
    try:
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if m.startswith("tiny-imagenet-200/")]
            if "tiny-imagenet-200/wnids.txt" not in members:
                raise DataError(f"{path} holds no tiny-imagenet-200/wnids.txt; it is not tiny-imagenet-200.zip.")
            print(f"extracting {len(members):,} files of {os.path.basename(path)}", file=sys.stderr)
            z.extractall(work, members)  # zipfile drops absolute paths and '..' components
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"cannot read the archive {path} ({e}); delete it and rerun.") from e
    out = os.path.join(work, "tiny-imagenet-200")
    image_files.tiny_imagenet_files(out)  # the layout the loader reads, checked now
    return out


SOURCES = {
    "cifar10": Source(
        archives=(Archive("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                          "c32a1d4ab5d03f1284b67883e8d87530"),),
        folder="cifar10-npy", markers=("meta.json",) + tuple(n + ".npy" for n in ARRAY_NAMES),
        size="162 MB",
        build=_cifar_builder("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)],
                             "test_batch.bin", "batches.meta.txt", 1, 10)),
    "cifar100": Source(
        archives=(Archive("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                          "03b5dce01913d631647c71ecec9e9cb8"),),
        folder="cifar100-npy", markers=("meta.json",) + tuple(n + ".npy" for n in ARRAY_NAMES),
        size="161 MB",
        build=_cifar_builder("cifar-100-binary", ["train.bin"], "test.bin", "fine_label_names.txt", 2, 100)),
    "fashion_mnist": Source(
        archives=(Archive(_fashion_mnist_url("train-images-idx3-ubyte.gz"), "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                  Archive(_fashion_mnist_url("train-labels-idx1-ubyte.gz"), "25c81989df183df01b3e8a0aad5dffbe"),
                  Archive(_fashion_mnist_url("t10k-images-idx3-ubyte.gz"), "bef4ecab320f06d8554ea6380940ec79"),
                  Archive(_fashion_mnist_url("t10k-labels-idx1-ubyte.gz"), "bb300cfdad3c16e7a12a480ee83cd310")),
        folder="fashion-mnist",
        markers=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"),
        size="30 MB", build=_build_fashion_mnist),
    "tiny_imagenet": Source(
        archives=(Archive("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de"),),
        folder="tiny-imagenet-200", markers=("wnids.txt", os.path.join("val", "val_annotations.txt")),
        size="248 MB", build=_build_tiny_imagenet),
}
"""Official archives (URL, published MD5) of each dataset. The CIFAR page
(https://www.cs.toronto.edu/~kriz/cifar.html) publishes the binary versions' MD5s; the
Fashion-MNIST and tiny-imagenet-200.zip ones are those torchvision pins for the same URLs."""


def prepare(name: str, data_dir: str = "", mirror: str = "", keep_archives: bool = False,
            force: bool = False) -> str:
    """Download, verify and convert dataset `name`; returns the prepared folder."""
    if name not in SOURCES:
        if name.split(":")[0] in ("imagenet2012", "imagenet"):
            raise DataError(IMAGENET_HELP)
        raise DataError(f"unknown dataset {name!r}. Datasets this command prepares: "
                        f"{', '.join(SOURCES)} (imagenet2012: bring your own, see --help).")
    source = SOURCES[name]
    root = os.path.abspath(target_dir(data_dir))
    final = os.path.join(root, source.folder)
    if os.path.exists(final) and not force:
        if is_complete(name, final):
            print(f"{name}: already prepared in {final} (--force prepares it again)", file=sys.stderr)
            return final
        raise DataError(f"{final} exists but is not a complete prepared {name} (it lacks one of "
                        f"{', '.join(source.markers)}); move it away or pass --force to replace it.")
    downloads = os.path.join(root, DOWNLOADS)
    work = os.path.join(root, f".{source.folder}.partial")
    _remove(work)  # left over by a killed run
    try:
        from jaxquant.data import download
        paths = {}
        for archive in source.archives:
            url = f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url
            print(f"{name}: {url}", file=sys.stderr)
            paths[archive.filename] = download.fetch(url, os.path.join(downloads, archive.filename),
                                                     archive.md5)
        os.makedirs(work)
        print(f"{name}: converting into {final}", file=sys.stderr)
        built = source.build(paths, work)
        if os.path.exists(final):  # --force: swap the new folder in, then drop the old one
            _remove(work + ".old")
            os.replace(final, work + ".old")
        os.replace(built, final)
        if not keep_archives:
            for path in paths.values():
                os.remove(path)
    finally:
        _remove(work)
        _remove(work + ".old")
        if os.path.isdir(downloads) and not os.listdir(downloads):
            os.rmdir(downloads)
    return final


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)


def _usage_hint(name: str, folder: str) -> str:
    root = os.path.dirname(folder)
    searched_by_default = root in data_dirs("")
    data_flag = "" if searched_by_default else f" --config.dataset.data_dir={root}"
    return (f"{name}: ready in {folder}. Train on it with --config.dataset.name={name}{data_flag}"
            + ("" if searched_by_default else f" (or export JAXQUANT_DATA_DIR={root})") + ".")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxquant.data.prepare",
        description="Download a public dataset's official archives (resumable, checksum-verified) "
                    "and prepare it for jaxquant; no TensorFlow needed.",
        epilog=IMAGENET_HELP)
    parser.add_argument("name", help=f"one of: {', '.join(SOURCES)}")
    parser.add_argument("--data_dir", default="",
                        help="where to put it (default: $JAXQUANT_DATA_DIR, else ~/.cache/jaxquant/datasets)")
    parser.add_argument("--mirror", default="",
                        help="download <mirror>/<archive file name> instead of the official URL "
                             "(http(s):// or file://); the published checksums still apply")
    parser.add_argument("--keep_archives", action="store_true", help="keep the downloaded archives")
    parser.add_argument("--force", action="store_true", help="prepare again over an existing copy")
    args = parser.parse_args(argv)
    try:
        folder = prepare(args.name, args.data_dir, args.mirror, args.keep_archives, args.force)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; the bytes downloaded so far are kept: rerun the same command to resume.",
              file=sys.stderr)
        return 130
    print(_usage_hint(args.name, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
