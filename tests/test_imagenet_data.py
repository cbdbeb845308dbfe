"""ImageNet-style streaming data: torchvision's train / test transforms on the host."""
import types

import ml_collections
import numpy as np
import pytest

from jaxquant import data, parallel
from jaxquant.data.augment import host_resized_crop_flip
from jaxquant.data.dataset import StreamingSplit
from jaxquant.data.tfds_source import resize_center_crop


def _framed(h=256, w=384):
    """An image that is 100 but for a 250 frame, 1/32 of each side wide (outside the
    center crop of resize + crop 7/8)."""
    image = np.full((h, w, 3), 250, np.uint8)
    dh, dw = h // 32, w // 32
    image[dh:h - dh, dw:w - dw] = 100
    return image


def test_test_transform_never_shows_the_frame_but_train_crops_from_the_full_image():
    image = _framed()
    assert resize_center_crop(image, 56).max() <= 101       # shorter side 64, center 56 x 56
    rng = np.random.default_rng(0)
    crops = [host_resized_crop_flip(image, 56, rng) for _ in range(100)]
    assert all(c.shape == (56, 56, 3) and c.dtype == np.uint8 for c in crops)
    assert sum(c.max() >= 200 for c in crops) >= 10          # boxes reach the border


def test_host_resized_crop_flip_flips_about_half_and_keeps_constants():
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(host_resized_crop_flip(np.full((50, 70, 3), 9, np.uint8), 16, rng),
                                  np.full((16, 16, 3), 9, np.uint8))
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3))  # brighter to the right
    rising = [np.diff(host_resized_crop_flip(ramp, 16, rng)[8, :, 0].astype(int)).sum() > 0
              for _ in range(200)]
    assert 70 < sum(rising) < 130


def _split():
    read = lambda i: (np.full((4, 4, 3), i, np.uint8), i)  # noqa: E731

    def augmented_read(i, rng):
        return np.full((4, 4, 3), int(rng.integers(0, 256)), np.uint8), i

    return StreamingSplit(read, np.arange(10), (4, 4, 3), augmented_read)


def test_seeded_batches_depend_on_seed_and_example_only():
    split = _split()
    a, la = split.get_batch([3, 5, 7], seed=(0, 12))
    b, lb = split.get_batch([7, 3], seed=(0, 12))     # other batch composition, same seed
    np.testing.assert_array_equal(b[0], a[2])
    np.testing.assert_array_equal(b[1], a[0])
    np.testing.assert_array_equal(la, [3, 5, 7])
    c, _ = split.get_batch([3, 5, 7], seed=(0, 13))
    assert not np.array_equal(a, c)
    plain, _ = split.get_batch([3, 5])                # no seed (evaluation): the plain read
    np.testing.assert_array_equal(plain[:, 0, 0, 0], [3, 5])
    plain, _ = split.without_augmentation().get_batch([3, 5], seed=(0, 12))
    np.testing.assert_array_equal(plain[:, 0, 0, 0], [3, 5])


def test_trainer_batches_of_a_streamed_split_are_seeded_by_step():
    from jaxquant.train import _Batches
    config = ml_collections.ConfigDict(dict(seed=3, train=dict(batch_size=4)))
    ds = types.SimpleNamespace(train=_split())
    exp = types.SimpleNamespace(config=config, dataset=ds, mesh=parallel.make_mesh(), steps_per_epoch=2)
    first = [np.asarray(_Batches(exp).get(s)[0]) for s in (0, 1, 2)]
    again = [np.asarray(_Batches(exp).get(s)[0]) for s in (2, 0, 1)]   # a resumed run
    np.testing.assert_array_equal(first[2], again[0])
    np.testing.assert_array_equal(first[0], again[1])
    assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("augment,device,host", [("", "none", True), ("crop_flip", "crop_flip", False),
                                                 ("none", "none", False)])
def test_imagenet_augmentation_runs_on_the_host_only_for_resized_crop_flip(tmp_path, augment, device, host):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        d = data.load(ml_collections.ConfigDict(dict(name="imagenet2012", data_dir=str(tmp_path),
                                                     validation=0, augment=augment, image_size=24)))
        images, _ = d.train.get_batch([0, 1], seed=(0, 0))
    assert d.augment == device and (d.train.augmented_read is not None) == host
    assert images.shape == (2, 24, 24, 3)
