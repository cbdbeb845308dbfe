"""Device-side augmentation and normalisation, jittable and deterministic given a key.

Kinds (the CIFAR / TinyImageNet recipes of the MD and PMF papers):
- 'crop_flip': zero-pad 4 pixels on each side, random H x W crop, random
  horizontal flip, independently per image (torchvision
  `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()`).
- 'resized_crop_flip': random resized crop (area fraction in [0.08, 1], aspect
  ratio in [3/4, 4/3], 10 tries then the whole image, as torchvision's
  `RandomResizedCrop`), resized back to H x W bilinearly (no antialiasing), then a
  random horizontal flip.
- 'none': identity.

At test time every kind is the identity: stored images already have the
network's input size (TinyImageNet's 64 x 64 center crop of a 64 x 64 image is
the image itself). Streamed datasets (ImageNet) do 'resized_crop_flip' on the
host instead, from the full decoded image (`host_resized_crop_flip`), and
resize + center-crop their test images there (`tfds_source.resize_center_crop`).

Augment uint8 images before `normalize`, so that padding is black pixels, as
in the reference pipelines (pad, then normalise).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("none", "crop_flip", "resized_crop_flip")
PAD = 4
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
_TRIES = 10


def normalize(images, mean, std) -> jax.Array:
    """(x / 255 - mean) / std per channel; images [..., C] in 0..255 -> float32."""
    x = jnp.asarray(images).astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment(key: jax.Array, images, kind: str) -> jax.Array:
    """Randomly augment a batch [N, H, W, C] (uint8 or float); same shape and dtype.

    `kind` must be static under jit (close over it, or mark it static).
    """
    if kind == "none":
        return jnp.asarray(images)
    if kind == "crop_flip":
        return crop_flip(key, images)
    if kind == "resized_crop_flip":
        return resized_crop_flip(key, images)
    raise ValueError(f"unknown augmentation {kind!r}; valid kinds: {', '.join(KINDS)}.")


def _flip_where(images, mirror) -> jax.Array:
    return jnp.where(mirror[:, None, None, None], images[:, :, ::-1], images)


def _crop_at(images, u, pad: int) -> jax.Array:
    """Zero-pad by `pad`, crop H x W at offsets floor(u (2 pad + 1)), u [N, 2] in [0, 1)."""
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jnp.minimum(jnp.floor(u * (2 * pad + 1)), 2 * pad).astype(jnp.int32)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], jnp.int32(0)), (h, w, c))
    return jax.vmap(crop)(padded, offsets)


# Each augmentation draws all its random numbers with one `jax.random.uniform`
# call: every random-bits call costs seconds of XLA compile time on CPU.

def flip(key: jax.Array, images) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    images = jnp.asarray(images)
    return _flip_where(images, jax.random.uniform(key, (images.shape[0],)) < 0.5)


def pad_crop(key: jax.Array, images, pad: int = PAD) -> jax.Array:
    """Zero-pad by `pad` then crop H x W at a uniform offset in {0..2 pad}^2, per image."""
    images = jnp.asarray(images)
    return _crop_at(images, jax.random.uniform(key, (images.shape[0], 2)), pad)


def crop_flip(key: jax.Array, images) -> jax.Array:
    """Pad-4 random crop, then random horizontal flip, independently per image."""
    images = jnp.asarray(images)
    u = jax.random.uniform(key, (images.shape[0], 3))
    return _flip_where(_crop_at(images, u[:, :2], PAD), u[:, 2] < 0.5)


RANDOMS_PER_BOX = 2 * _TRIES + 2


def _boxes(u, h: int, w: int, xp=jnp):
    """Random-resized-crop boxes from uniforms u [n, RANDOMS_PER_BOX]; `xp` = jnp or numpy."""
    area = h * w * (SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, :_TRIES])
    log_r = math.log(RATIO[0]) + (math.log(RATIO[1]) - math.log(RATIO[0])) * u[:, _TRIES:2 * _TRIES]
    ratio = xp.exp(log_r)
    cw = xp.round(xp.sqrt(area * ratio))
    ch = xp.round(xp.sqrt(area / ratio))
    fits = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
    first = xp.argmax(fits, axis=1)
    found = xp.any(fits, axis=1)
    pick = lambda a: xp.take_along_axis(a, first[:, None], axis=1)[:, 0]
    ch = xp.where(found, pick(ch), h)
    cw = xp.where(found, pick(cw), w)
    top = xp.floor(u[:, 2 * _TRIES] * (h - ch + 1))
    left = xp.floor(u[:, 2 * _TRIES + 1] * (w - cw + 1))
    return top, left, ch, cw


def resized_crop_boxes(key: jax.Array, n: int, h: int, w: int):
    """Random-resized-crop boxes (top, left, height, width) as float32 [n] each.

    For each image: up to 10 candidates with area s * h * w, s ~ U(0.08, 1) and
    aspect log r ~ U(log 3/4, log 4/3), width sqrt(s h w r), height sqrt(s h w / r)
    (rounded); the first that fits is kept, else the whole image. The top-left
    corner is uniform over the positions where the box fits.
    """
    return _boxes(jax.random.uniform(key, (n, RANDOMS_PER_BOX)), h, w)


def crop_resize(image, top, left, ch, cw, out_h: int, out_w: int) -> jax.Array:
    """Bilinear resize of the box (top, left, ch, cw) of `image` [H, W, C] to out_h x out_w.

    Output pixel i samples row top + (i + 1/2) ch / out_h - 1/2 (pixel centres,
    as `align_corners=False`), clamped to the image; same for columns.
    """
    h, w = image.shape[:2]
    x = image.astype(jnp.float32)

    def interp(x, axis, start, length, out, size):
        pos = start + (jnp.arange(out, dtype=jnp.float32) + 0.5) * length / out - 0.5
        pos = jnp.clip(pos, 0.0, size - 1.0)
        lo = jnp.floor(pos)
        frac = pos - lo
        lo = lo.astype(jnp.int32)
        hi = jnp.minimum(lo + 1, size - 1)
        shape = [1] * x.ndim
        shape[axis] = out
        frac = frac.reshape(shape)
        return jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, hi, axis=axis) * frac

    x = interp(x, 0, top, ch, out_h, h)
    x = interp(x, 1, left, cw, out_w, w)
    if jnp.issubdtype(image.dtype, jnp.integer):
        x = jnp.clip(jnp.round(x), 0, 255)
    return x.astype(image.dtype)


def host_resized_crop_flip(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """'resized_crop_flip' of one decoded uint8 image [H, W, C] of any size, on the host.

    torchvision's `RandomResizedCrop(size)` + `RandomHorizontalFlip()`: a box
    drawn as in `resized_crop_boxes` from the full image, resized to size x size
    with PIL's bilinear filter, mirrored with probability 1/2. Streamed datasets
    (ImageNet) use it instead of the device version, which only sees a crop.
    When none of the 10 tries fits, the box is the whole image (torchvision
    then takes a center crop of clamped aspect ratio).
    """
    from PIL import Image
    h, w = image.shape[:2]
    u = rng.random((1, RANDOMS_PER_BOX + 1))
    top, left, ch, cw = (float(v[0]) for v in _boxes(u[:, :-1], h, w, xp=np))
    pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch)))
    out = out[..., None] if out.ndim == 2 else out
    return out[:, ::-1] if u[0, -1] < 0.5 else out


def resized_crop_flip(key: jax.Array, images) -> jax.Array:
    """Random resized crop back to H x W, then random horizontal flip."""
    images = jnp.asarray(images)
    n, h, w, _ = images.shape
    u = jax.random.uniform(key, (n, RANDOMS_PER_BOX + 1))
    top, left, ch, cw = _boxes(u[:, :-1], h, w)
    resized = jax.vmap(lambda im, t, l, a, b: crop_resize(im, t, l, a, b, h, w))(images, top, left, ch, cw)
    return _flip_where(resized, u[:, -1] < 0.5)
