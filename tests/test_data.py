"""Tests of jaxquant.data: sources, splits, the .npy cache, augmentation and data errors."""
import gzip
import io
import os
import sys
import tarfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxquant import data
from jaxquant.data import augment as aug
from jaxquant.data import idx, image_files
from jaxquant.data.dataset import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# <repo>/../shared/data holds the shared CIFAR-10 JPEG tarball (<repo>/../../shared from a git worktree).
CIFAR_TARBALL = next((p for p in (os.path.join(REPO, *[".."] * up, "shared", "data", "cifar10-jpeg.tar.gz")
                                  for up in (1, 2)) if os.path.isfile(p)),
                     os.path.join(REPO, "..", "shared", "data", "cifar10-jpeg.tar.gz"))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def cfg(name, data_dir="", validation=0, augment="", **extra):
    return ml_collections.ConfigDict(dict(name=name, data_dir=str(data_dir), validation=validation,
                                          augment=augment, **extra))


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch, tmp_path):
    """No $JAXQUANT_DATA_DIR, and a private home: no dataset prepared in ~/.cache/jaxquant/datasets."""
    monkeypatch.delenv("JAXQUANT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits():
    return data.load(cfg("digits"))


def test_digits_has_1437_train_360_test_uint8_8x8x1_images(digits):
    assert (len(digits.train), len(digits.test), digits.validation) == (1437, 360, None)
    assert digits.train.in_memory and digits.test.in_memory
    assert digits.train.images.shape == (1437, 8, 8, 1) and digits.train.images.dtype == np.uint8
    assert digits.test.labels.shape == (360,) and digits.test.labels.dtype == np.int32
    assert digits.image_shape == (8, 8, 1) and digits.num_classes == 10
    assert digits.augment == "none"
    assert set(np.unique(digits.train.labels)) == set(range(10))


def test_digits_pixels_are_sklearn_values_scaled_16_to_255(digits):
    allowed = {int(np.round(v * 255 / 16)) for v in range(17)}  # 0, 16, 32, 48, 64, 80, 96, 112, 128, ...
    values = set(np.unique(np.concatenate([digits.train.images.ravel(), digits.test.images.ravel()])))
    assert values <= allowed and {0, 255} <= values
    from sklearn.datasets import load_digits
    sk = load_digits()
    all_images = np.concatenate([digits.test.images, digits.train.images])[..., 0]
    order = np.random.RandomState(data.DIGITS_SEED).permutation(1797)
    np.testing.assert_array_equal(all_images, np.round(sk.images[order] * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(np.concatenate([digits.test.labels, digits.train.labels]), sk.target[order])


def test_digits_split_is_deterministic(digits):
    again = data.load(cfg("digits"))
    np.testing.assert_array_equal(again.train.images, digits.train.images)
    np.testing.assert_array_equal(again.test.labels, digits.test.labels)


def test_mean_and_std_are_computed_from_the_train_split(digits):
    x = digits.train.images.astype(np.float64) / 255
    np.testing.assert_allclose(digits.mean, [x.mean()], rtol=1e-9)
    np.testing.assert_allclose(digits.std, [x.std()], rtol=1e-6)


def test_validation_is_the_last_examples_of_train(digits):
    d = data.load(cfg("digits", validation=100))
    assert (len(d.train), len(d.validation), len(d.test)) == (1337, 100, 360)
    np.testing.assert_array_equal(d.train.images, digits.train.images[:1337])
    np.testing.assert_array_equal(d.validation.images, digits.train.images[1337:])
    np.testing.assert_array_equal(d.validation.labels, digits.train.labels[1337:])
    # train statistics exclude the validation examples
    np.testing.assert_allclose(d.mean, [digits.train.images[:1337].mean() / 255], rtol=1e-9)


@pytest.mark.parametrize("bad", [-1, 1437, 5000, 2.5])
def test_validation_size_out_of_range_is_a_data_error(bad):
    with pytest.raises(DataError, match="validation"):
        data.load(cfg("digits", validation=bad))


def test_split_get_batch_returns_the_indexed_examples(digits):
    images, labels = digits.train.get_batch([5, 0, 5])
    np.testing.assert_array_equal(images, digits.train.images[[5, 0, 5]])
    np.testing.assert_array_equal(labels, digits.train.labels[[5, 0, 5]])


# ---------------------------------------------------------------- errors common to all sources

def test_unknown_dataset_name_lists_the_valid_ones():
    with pytest.raises(DataError) as e:
        data.load(cfg("cifar11"))
    msg = str(e.value)
    assert "'cifar11'" in msg and all(n in msg for n in ("digits", "fashion_mnist", "cifar10",
                                                         "image_folder:<path>", "tiny_imagenet:<path>"))


def test_path_dataset_without_a_path_asks_for_one():
    with pytest.raises(DataError, match="image_folder:/path/to/data"):
        data.load(cfg("image_folder"))


def test_unknown_augmentation_is_a_data_error_listing_kinds():
    with pytest.raises(DataError, match="crop_flip.*resized_crop_flip"):
        data.load(cfg("digits", augment="mixup"))


def test_data_error_is_a_user_error_so_the_cli_prints_it_without_traceback():
    from jaxquant.errors import UserError
    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)


# ---------------------------------------------------------------- IDX / fashion_mnist

def write_idx(path, array, gz=True):
    array = np.asarray(array, np.uint8)
    raw = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def make_idx_dir(directory, n_train=12, n_test=5, seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {"train": (rng.randint(0, 256, (n_train, 28, 28)), rng.randint(0, 10, n_train)),
              "test": (rng.randint(0, 256, (n_test, 28, 28)), rng.randint(0, 10, n_test))}
    for split, (images_file, labels_file) in idx.FASHION_MNIST_FILES.items():
        write_idx(os.path.join(directory, images_file + ".gz"), arrays[split][0])
        write_idx(os.path.join(directory, labels_file), arrays[split][1], gz=False)  # plain file too
    return arrays


def test_idx_files_in_data_dir_are_read_exactly(tmp_path):
    arrays = make_idx_dir(tmp_path / "fm")
    d = data.load(cfg("fashion_mnist", data_dir=tmp_path / "fm"))
    np.testing.assert_array_equal(d.train.images[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(d.train.labels, arrays["train"][1])
    np.testing.assert_array_equal(d.test.images[..., 0], arrays["test"][0])
    assert d.image_shape == (28, 28, 1) and d.num_classes == 10 and d.augment == "none"


def test_idx_dir_from_environment_variable(tmp_path, monkeypatch):
    arrays = make_idx_dir(tmp_path / "fashion-mnist", n_train=7)
    monkeypatch.setenv("JAXQUANT_DATA_DIR", str(tmp_path))  # the fashion-mnist subfolder is searched
    d = data.load(cfg("fashion_mnist"))
    np.testing.assert_array_equal(d.train.labels, arrays["train"][1])
    assert os.path.isdir(tmp_path / "jaxquant_cache")


def test_decoded_idx_arrays_are_cached_as_npy_and_reused(tmp_path, monkeypatch):
    make_idx_dir(tmp_path)
    first = data.load(cfg("fashion_mnist", data_dir=tmp_path))
    (entry,) = os.listdir(tmp_path / "jaxquant_cache")
    cached = np.load(tmp_path / "jaxquant_cache" / entry / "train_images.npy", allow_pickle=False)
    np.testing.assert_array_equal(cached, first.train.images)

    def fail(path):
        raise AssertionError(f"source re-read: {path}")
    monkeypatch.setattr(idx, "read_idx", fail)
    second = data.load(cfg("fashion_mnist", data_dir=tmp_path))
    np.testing.assert_array_equal(second.train.images, first.train.images)
    np.testing.assert_array_equal(second.test.labels, first.test.labels)


def test_changed_idx_source_invalidates_the_cache(tmp_path):
    make_idx_dir(tmp_path, seed=0)
    first = data.load(cfg("fashion_mnist", data_dir=tmp_path))
    arrays = make_idx_dir(tmp_path, n_train=9, seed=1)
    second = data.load(cfg("fashion_mnist", data_dir=tmp_path))
    assert len(first.train) == 12 and len(second.train) == 9
    np.testing.assert_array_equal(second.train.labels, arrays["train"][1])


def test_unreadable_cache_is_rebuilt_from_the_source(tmp_path):
    make_idx_dir(tmp_path)
    first = data.load(cfg("fashion_mnist", data_dir=tmp_path))
    (entry,) = os.listdir(tmp_path / "jaxquant_cache")
    (tmp_path / "jaxquant_cache" / entry / "train_images.npy").write_bytes(b"garbage")
    second = data.load(cfg("fashion_mnist", data_dir=tmp_path))
    np.testing.assert_array_equal(second.train.images, first.train.images)


def test_missing_idx_file_in_data_dir_is_named(tmp_path):
    make_idx_dir(tmp_path)
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=f"IDX directory {tmp_path} holds .* but not t10k-images-idx3-ubyte"):
        data.load(cfg("fashion_mnist", data_dir=tmp_path))


def test_idx_bad_magic_names_the_file(tmp_path):
    make_idx_dir(tmp_path)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    with pytest.raises(DataError, match=f"{bad}.*bad magic"):
        data.load(cfg("fashion_mnist", data_dir=tmp_path))


def test_truncated_gzip_idx_names_the_file(tmp_path):
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{path}.*(corrupt or truncated)"):
        data.load(cfg("fashion_mnist", data_dir=tmp_path))


def test_idx_with_missing_data_bytes_names_the_file_and_sizes(tmp_path):
    make_idx_dir(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])  # declares 12 labels, holds 9
    with pytest.raises(DataError, match=rf"{path} is truncated.*\(12,\).*holds 9"):
        data.load(cfg("fashion_mnist", data_dir=tmp_path))


def test_idx_image_and_label_count_mismatch_names_both_files(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11), gz=False)
    with pytest.raises(DataError, match="12 images but .*train-labels-idx1-ubyte holds 11 labels"):
        data.load(cfg("fashion_mnist", data_dir=tmp_path))


def test_idx_label_out_of_range_is_caught(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", [0, 1, 2, 3, 10], gz=False)
    with pytest.raises(DataError, match="label 10, outside 0..9"):
        data.load(cfg("fashion_mnist", data_dir=tmp_path))


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason=f"{FASHION_DIR} absent (Debian package "
                    "dataset-fashion-mnist not installed)")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    d = data.load(cfg("fashion_mnist", data_dir=tmp_path, validation=5000))
    assert (len(d.train), len(d.validation), len(d.test)) == (55000, 5000, 10000)
    assert d.train.images.shape[1:] == (28, 28, 1) and d.train.images.dtype == np.uint8
    assert d.train.images.max() == 255 and d.train.images.min() == 0
    # the published first training labels: ankle boot, t-shirt, t-shirt, dress, t-shirt, pullover, ...
    np.testing.assert_array_equal(d.train.labels[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    counts = np.bincount(np.concatenate([d.train.labels, d.validation.labels]), minlength=10)
    np.testing.assert_array_equal(counts, np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(d.test.labels), np.full(10, 1000))
    np.testing.assert_allclose(d.mean, [0.286], atol=2e-3)  # the usual Fashion-MNIST normalisation
    np.testing.assert_allclose(d.std, [0.353], atol=2e-3)
    assert d.class_names[9] == "ankle boot"


# ---------------------------------------------------------------- tensorflow-datasets

def test_cifar10_through_tfds_data_source_mock(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=20):
        d = data.load(cfg("cifar10", data_dir=tmp_path, validation=4))
    assert (len(d.train), len(d.validation), len(d.test)) == (16, 4, 20)
    assert d.train.images.shape == (16, 32, 32, 3) and d.train.images.dtype == np.uint8
    assert d.train.labels.dtype == np.int32 and d.train.labels.min() >= 0 and d.train.labels.max() < 10
    assert d.num_classes == 10 and d.image_shape == (32, 32, 3)
    assert d.mean == (0.4914, 0.4822, 0.4465) and d.std == (0.2023, 0.1994, 0.2010)
    assert d.augment == "crop_flip"
    assert not os.path.exists(tmp_path / "jaxquant_cache")  # mocked data is never cached
    # Reading a prepared dataset needs no TensorFlow (the [tfds] extra is only for preparing).
    assert "tensorflow" not in sys.modules


def test_imagenet_streams_fixed_size_batches_through_tfds_mock(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        d = data.load(cfg("imagenet2012", data_dir=tmp_path, validation=2, image_size=40))
        assert not d.train.in_memory and (len(d.train), len(d.validation), len(d.test)) == (4, 2, 6)
        images, labels = d.validation.get_batch([1, 0])
    assert images.shape == (2, 40, 40, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert d.image_shape == (40, 40, 3) and d.num_classes == 1000
    # random resized crop + flip happen on the host, from the full image; the device does nothing
    assert d.mean == data.IMAGENET_MEAN and d.augment == "none"
    assert d.train.augmented_read is not None and d.validation.augmented_read is not None
    assert d.test.augmented_read is None


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match=r"'cifar100'.*tfds build cifar100 --file_format=array_record"):
        data.load(cfg("cifar100", data_dir=tmp_path))


def test_resize_center_crop_keeps_the_center():
    from jaxquant.data.tfds_source import resize_center_crop
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 50:150] = 200  # a bright central square band
    out = resize_center_crop(image, 56, crop_fraction=0.875)  # shorter side -> 64, width 128, crop 56
    assert out.shape == (56, 56, 3)
    assert out.min() >= 199  # the 56-wide center crop of a 128-wide image lies inside the band


# ---------------------------------------------------------------- image folders

CIFAR_CLASSES = ("airplane", "automobile", "bird")


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    """3 classes x (8 train, 4 test) real CIFAR-10 JPEGs from the shared tarball."""
    if not os.path.isfile(CIFAR_TARBALL):
        pytest.skip(f"{CIFAR_TARBALL} absent")
    root = tmp_path_factory.mktemp("cifar_folder")
    wanted = {"train": 8, "test": 4}
    with tarfile.open(CIFAR_TARBALL) as tar:
        for member in tar:
            parts = member.name.split("/")  # cifar10-jpeg/<split>/<class>/<nnnn>.jpg
            if len(parts) != 4 or not member.isfile():
                continue
            split, cls, file = parts[1:]
            if split == "train" and cls not in CIFAR_CLASSES and cls > CIFAR_CLASSES[-1]:
                break  # members are sorted: test/*, then train/<class>/*
            if cls in CIFAR_CLASSES and int(file.split(".")[0]) < wanted[split]:
                os.makedirs(root / split / cls, exist_ok=True)
                (root / split / cls / file).write_bytes(tar.extractfile(member).read())
    return root


def test_image_folder_from_cifar_jpegs(cifar_folder, tmp_path):
    d = data.load(cfg(f"image_folder:{cifar_folder}", data_dir=tmp_path))
    assert (len(d.train), len(d.test)) == (24, 12)
    assert d.train.images.shape == (24, 32, 32, 3) and d.train.images.dtype == np.uint8
    assert d.class_names == CIFAR_CLASSES and d.num_classes == 3
    np.testing.assert_array_equal(d.train.labels, np.repeat([0, 1, 2], 8))
    np.testing.assert_array_equal(d.test.labels, np.repeat([0, 1, 2], 4))
    expected = np.asarray(Image.open(cifar_folder / "test" / "bird" / "0002.jpg").convert("RGB"))
    np.testing.assert_array_equal(d.test.images[10], expected)
    assert d.augment == "crop_flip"
    np.testing.assert_allclose(d.mean, d.train.images.reshape(-1, 3).mean(0) / 255, rtol=1e-9)


def test_image_folder_cache_is_reused(cifar_folder, tmp_path, monkeypatch):
    first = data.load(cfg(f"image_folder:{cifar_folder}", data_dir=tmp_path))

    def fail(path):
        raise AssertionError(f"decoded again: {path}")
    monkeypatch.setattr(image_files, "decode_image", fail)
    second = data.load(cfg(f"image_folder:{cifar_folder}", data_dir=tmp_path))
    np.testing.assert_array_equal(second.train.images, first.train.images)
    assert second.class_names == first.class_names


def make_folder(root, sizes, mode="RGB"):
    """root/{split}/{class}/{i}.png, solid (40 c, i, 7) for class c; sizes: {split: {class: n}}."""
    for split, classes in sizes.items():
        for c, (cls, n) in enumerate(sorted(classes.items())):
            os.makedirs(root / split / cls, exist_ok=True)
            for i in range(n):
                color = (40 * c, i, 7) if mode == "RGB" else 40 * c + i
                Image.new(mode, (6, 5), color).save(root / split / cls / f"{i}.png")


def test_image_folder_png_pixels_and_sorted_class_indices(tmp_path):
    make_folder(tmp_path / "f", {"train": {"zebra": 2, "ant": 3}, "test": {"zebra": 1}})
    d = data.load(cfg(f"image_folder:{tmp_path / 'f'}", data_dir=tmp_path))
    assert d.class_names == ("ant", "zebra") and d.image_shape == (5, 6, 3)
    np.testing.assert_array_equal(d.train.labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(d.test.labels, [1])
    np.testing.assert_array_equal(d.train.images[4, 0, 0], [40, 1, 7])  # zebra (c=1), image 1
    assert d.augment == "none"  # not 32x32


def test_grayscale_image_folder_has_one_channel_and_mixed_folders_get_three(tmp_path):
    make_folder(tmp_path / "g", {"train": {"a": 2}, "test": {"a": 1}}, mode="L")
    d = data.load(cfg(f"image_folder:{tmp_path / 'g'}", data_dir=tmp_path))
    assert d.image_shape == (5, 6, 1)
    Image.new("RGB", (6, 5), (1, 2, 3)).save(tmp_path / "g" / "train" / "a" / "9.png")
    d = data.load(cfg(f"image_folder:{tmp_path / 'g'}", data_dir=tmp_path))
    assert d.image_shape == (5, 6, 3)
    np.testing.assert_array_equal(d.train.images[1], np.full((5, 6, 3), 1))  # gray 1 repeated


def test_image_folder_missing_path_names_it_and_the_layout(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'} does not exist.*<path>/train/<class>"):
        data.load(cfg(f"image_folder:{tmp_path / 'nowhere'}"))
    os.makedirs(tmp_path / "only_train" / "train" / "a")
    with pytest.raises(DataError, match=f"{tmp_path / 'only_train' / 'test'} does not exist"):
        data.load(cfg(f"image_folder:{tmp_path / 'only_train'}"))


def test_image_folder_one_level_too_high_suggests_the_nested_folder(tmp_path):
    make_folder(tmp_path / "top" / "cifar10-jpeg", {"train": {"a": 1}, "test": {"a": 1}})
    with pytest.raises(DataError, match=f"Did you mean {tmp_path / 'top' / 'cifar10-jpeg'}\\?"):
        data.load(cfg(f"image_folder:{tmp_path / 'top'}"))
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(DataError, match="is an archive: extract it first"):
        data.load(cfg(f"image_folder:{archive}"))


def test_test_class_absent_from_train_is_named(tmp_path):
    make_folder(tmp_path / "f", {"train": {"cat": 1}, "test": {"cat": 1, "dog": 1}})
    with pytest.raises(DataError, match="class folder.*dog.*no counterpart"):
        data.load(cfg(f"image_folder:{tmp_path / 'f'}", data_dir=tmp_path))


def test_corrupt_image_file_is_named(tmp_path):
    make_folder(tmp_path / "f", {"train": {"cat": 2}, "test": {"cat": 1}})
    bad = tmp_path / "f" / "train" / "cat" / "1.png"
    bad.write_bytes(bad.read_bytes()[:30])  # truncated PNG
    with pytest.raises(DataError, match=f"cannot decode image file {bad}"):
        data.load(cfg(f"image_folder:{tmp_path / 'f'}", data_dir=tmp_path))
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=f"cannot decode image file {bad}"):
        data.load(cfg(f"image_folder:{tmp_path / 'f'}", data_dir=tmp_path))


def test_image_of_another_size_is_named(tmp_path):
    make_folder(tmp_path / "f", {"train": {"cat": 2}, "test": {"cat": 1}})
    odd = tmp_path / "f" / "train" / "cat" / "5.png"
    Image.new("RGB", (7, 5)).save(odd)
    with pytest.raises(DataError, match=f"image {odd} is 7x5.*share one size"):
        data.load(cfg(f"image_folder:{tmp_path / 'f'}", data_dir=tmp_path))


def test_empty_class_folder_is_named(tmp_path):
    make_folder(tmp_path / "f", {"train": {"cat": 2}, "test": {"cat": 1}})
    os.makedirs(tmp_path / "f" / "train" / "dog")
    with pytest.raises(DataError, match=f"{tmp_path / 'f' / 'train' / 'dog'} holds no"):
        data.load(cfg(f"image_folder:{tmp_path / 'f'}", data_dir=tmp_path))


# ---------------------------------------------------------------- tiny_imagenet

WNIDS = ("n01443537", "n02099601", "n01629819")


def make_tiny_imagenet(root, n_train=3, val=(("val_0.JPEG", 2), ("val_1.JPEG", 0), ("val_2.JPEG", 1))):
    os.makedirs(root / "val" / "images")
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for w, wnid in enumerate(WNIDS):
        os.makedirs(root / "train" / wnid / "images")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
        for i in range(n_train):
            mode = "L" if (w, i) == (0, 0) else "RGB"  # TinyImageNet has a few grayscale JPEGs
            Image.new(mode, (64, 64), 50 * w + 10 if mode == "L" else (50 * w + 10, 0, 0)).save(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", "JPEG")
    lines = []
    for name, w in val:
        Image.new("RGB", (64, 64), (0, 50 * w + 10, 0)).save(root / "val" / "images" / name, "JPEG")
        lines.append(f"{name}\t{WNIDS[w]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tiny_imagenet_layout_is_read_with_val_as_test(tmp_path):
    make_tiny_imagenet(tmp_path / "tin")
    d = data.load(cfg(f"tiny_imagenet:{tmp_path / 'tin'}", data_dir=tmp_path, validation=2))
    assert d.class_names == tuple(sorted(WNIDS)) and d.num_classes == 3
    assert (len(d.train), len(d.validation), len(d.test)) == (7, 2, 3)
    assert d.image_shape == (64, 64, 3) and d.augment == "resized_crop_flip"
    assert d.mean == data.IMAGENET_MEAN and d.std == data.IMAGENET_STD
    index = {w: sorted(WNIDS).index(w) for w in WNIDS}
    labels = np.concatenate([d.train.labels, d.validation.labels])
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 3))
    # train label -> red channel 50 w + 10 of wnid w (JPEG: within a few levels); gray one repeated
    all_train = np.concatenate([d.train.images, d.validation.images])
    for image, label in zip(all_train, labels):
        w = WNIDS.index(sorted(WNIDS)[label])
        assert abs(int(image[32, 32, 0]) - (50 * w + 10)) <= 3
    np.testing.assert_array_equal(d.test.labels, [index[WNIDS[2]], index[WNIDS[0]], index[WNIDS[1]]])
    for image, label in zip(d.test.images, d.test.labels):
        assert abs(int(image[32, 32, 1]) - (50 * WNIDS.index(sorted(WNIDS)[label]) + 10)) <= 3


def test_tiny_imagenet_unknown_val_wnid_is_named(tmp_path):
    make_tiny_imagenet(tmp_path / "tin")
    ann = tmp_path / "tin" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text().replace(WNIDS[1], "n99999999"))
    with pytest.raises(DataError, match="line 3: image val_2.JPEG .*wnid n99999999.*not in"):
        data.load(cfg(f"tiny_imagenet:{tmp_path / 'tin'}", data_dir=tmp_path))


def test_tiny_imagenet_train_folder_not_in_wnids_is_named(tmp_path):
    make_tiny_imagenet(tmp_path / "tin")
    (tmp_path / "tin" / "wnids.txt").write_text("\n".join(WNIDS[:2]))
    with pytest.raises(DataError, match=f"folders not in wnids.txt: {WNIDS[2]}"):
        data.load(cfg(f"tiny_imagenet:{tmp_path / 'tin'}", data_dir=tmp_path))


def test_tiny_imagenet_val_image_without_annotation_is_named(tmp_path):
    make_tiny_imagenet(tmp_path / "tin")
    Image.new("RGB", (64, 64)).save(tmp_path / "tin" / "val" / "images" / "val_9.JPEG")
    with pytest.raises(DataError, match="val_9.JPEG"):
        data.load(cfg(f"tiny_imagenet:{tmp_path / 'tin'}", data_dir=tmp_path))


def test_tiny_imagenet_missing_annotations_names_the_file_and_layout(tmp_path):
    make_tiny_imagenet(tmp_path / "tin")
    os.remove(tmp_path / "tin" / "val" / "val_annotations.txt")
    with pytest.raises(DataError, match="val_annotations.txt. Expected the official tiny-imagenet-200"):
        data.load(cfg(f"tiny_imagenet:{tmp_path / 'tin'}", data_dir=tmp_path))


# ---------------------------------------------------------------- augmentation

def test_normalize_by_hand():
    x = np.array([[[[0, 255, 51]]]], np.uint8)  # one pixel, three channels
    out = aug.normalize(x, mean=(0.5, 0.5, 0.2), std=(0.25, 0.5, 0.1))
    np.testing.assert_allclose(out, [[[[-2.0, 1.0, 0.0]]]], atol=1e-6)
    assert out.dtype == jnp.float32


AUGMENT = jax.jit(aug.augment, static_argnames="kind")  # one compilation per (kind, shape)


@pytest.mark.parametrize("kind", aug.KINDS)
def test_augment_is_deterministic_per_key_and_keeps_shape_and_dtype(kind):
    x = np.random.RandomState(3).randint(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    f = AUGMENT
    a, b = f(jax.random.key(0), x, kind=kind), f(jax.random.key(0), x, kind=kind)
    c = f(jax.random.key(1), x, kind=kind)
    assert a.shape == x.shape and a.dtype == jnp.uint8
    np.testing.assert_array_equal(a, b)
    if kind == "none":
        np.testing.assert_array_equal(a, x)
    else:
        assert not np.array_equal(a, c)


def test_augment_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown augmentation 'cutout'"):
        aug.augment(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), "cutout")


def _all_crops(image, pad=4):
    """[81, H, W, C]: the image zero-padded by 4 and cropped at offset (dy, dx), dy major."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    return np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)])


def _matches(out, crops):
    """bool [N, 81]: output n equals crop k."""
    return np.all(out[:, None] == crops[None], axis=(2, 3, 4))


def test_pad_crop_is_a_zero_padded_shift_and_reaches_every_offset():
    image = (np.arange(1, 8 * 8 + 1).reshape(8, 8, 1) % 250 + 1).astype(np.uint8)  # no zero pixel
    crops = _all_crops(image)
    out = np.asarray(jax.jit(aug.pad_crop)(jax.random.key(0), np.repeat(image[None], 2000, axis=0)))
    match = _matches(out, crops)
    np.testing.assert_array_equal(match.sum(1), 1)  # each output is exactly one of the 81 crops
    assert np.all(match.any(0))  # and every offset 0..8 x 0..8 occurs


def test_flip_mirrors_about_half_of_the_images_left_right():
    image = np.arange(3 * 5).reshape(1, 3, 5, 1).astype(np.float32)
    out = np.asarray(jax.jit(aug.flip)(jax.random.key(0), np.repeat(image, 1000, axis=0)))
    flipped = np.all(out == image[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == image, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert 400 < flipped.sum() < 600


def test_crop_flip_output_is_a_crop_or_its_mirror():
    image = np.random.RandomState(0).randint(1, 256, (6, 6, 3)).astype(np.uint8)
    crops = _all_crops(image)
    out = np.asarray(jax.jit(aug.crop_flip)(jax.random.key(5), np.repeat(image[None], 300, axis=0)))
    plain = _matches(out, crops).any(1)
    mirrored = _matches(out[:, :, ::-1], crops).any(1)
    assert np.all(plain ^ mirrored)  # a random image has no mirror-symmetric crop
    assert 100 < mirrored.sum() < 200


def test_crop_resize_of_the_whole_image_is_the_identity_and_halving_averages_pixel_pairs():
    image = np.arange(8 * 8 * 2, dtype=np.float32).reshape(8, 8, 2)
    crop_resize = jax.jit(aug.crop_resize, static_argnums=(5, 6))
    np.testing.assert_allclose(crop_resize(image, 0., 0., 8., 8., 8, 8), image)
    half = crop_resize(image, 2., 4., 4., 4., 2, 2)  # box rows 2..5, cols 4..7 -> 2x2
    # output (i, j) samples row 2 + 2i + 0.5, col 4 + 2j + 0.5: mean of a 2x2 block
    expected = image[2:6, 4:8].reshape(2, 2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(half, expected, rtol=1e-6)


def test_resized_crop_boxes_fit_with_area_and_aspect_in_range():
    top, left, h, w = map(np.asarray, jax.jit(aug.resized_crop_boxes, static_argnums=(1, 2, 3))(
        jax.random.key(0), 4000, 64, 64))
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(top + h <= 64) and np.all(left + w <= 64)
    area = h * w / 64 ** 2
    whole = (h == 64) & (w == 64)
    inner = ~whole
    assert np.all(area[inner] >= 0.07) and np.all(w[inner] / h[inner] >= 0.7) and np.all(w[inner] / h[inner] <= 1.4)
    assert area.min() < 0.1 and np.mean(area > 0.5) > 0.3  # spans the 0.08..1 range


def test_resized_crop_flip_on_a_constant_image_is_constant():
    x = np.full((16, 32, 32, 3), 77, np.uint8)
    out = AUGMENT(jax.random.key(0), x, kind="resized_crop_flip")
    np.testing.assert_array_equal(out, x)


def test_streaming_split_reads_the_indexed_examples_in_order():
    from jaxquant.data.dataset import StreamingSplit
    read = lambda i: (np.full((3, 3, 1), i, np.uint8), 100 + i)  # noqa: E731
    split = StreamingSplit(read, np.arange(10, 20), (3, 3, 1))
    head, tail = split.take(0, 7), split.take(7, 10)
    assert not split.in_memory and (len(split), len(head), len(tail)) == (10, 7, 3)
    images, labels = tail.get_batch([2, 0])
    np.testing.assert_array_equal(labels, [119, 117])
    np.testing.assert_array_equal(images[:, 0, 0, 0], [19, 17])
    assert images.dtype == np.uint8 and labels.dtype == np.int32


def test_channel_stats_are_the_mean_and_std_of_each_channel_across_histogram_slices():
    from jaxquant.data.dataset import channel_stats
    n = (1 << 20) + 5  # more pixels than one histogram slice
    rng = np.random.RandomState(0)
    images = np.stack([rng.randint(0, 256, n), np.full(n, 7)], axis=-1).astype(np.uint8)
    images = images.reshape(n, 1, 1, 2)
    mean, std = channel_stats(images)
    x = images[..., 0].astype(np.float64).ravel() / 255.0
    assert mean[0] == pytest.approx(x.mean(), rel=1e-12) and std[0] == pytest.approx(x.std(), rel=1e-12)
    assert mean[1] == pytest.approx(7 / 255, rel=1e-12) and std[1] == 1.0  # constant channel: unscaled
