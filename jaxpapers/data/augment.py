"""Image augmentations as pure JAX functions of a batch and a key, run inside the jitted train step.

On the device they cost next to nothing and keep the host pipeline free; keyed by the step's key,
they give the same augmented global batch whatever the number of devices or processes.

Images are NHWC floats in [0, 1]. Besides the CIFAR recipe's padded crops and flips, the
self-supervised papers' view augmentations (SimCLR, arXiv:2002.05709, appendix A; used with small
changes by MoCo, BYOL, SimSiam, SwAV and Barlow Twins), each drawn independently per image with
torchvision's semantics unless a docstring says otherwise: `random_resized_crop`, `color_jitter`,
`random_grayscale`, `gaussian_blur` (`jaxpapers.selfsup.views` composes them).
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import jax.numpy as jnp

from jaxpapers.errors import ConfigError


def random_crop_with_padding(images: jax.Array, key: jax.Array, padding: int) -> jax.Array:
  """Zero-pads each NHWC image by `padding` pixels and crops back at a random offset.

  The CIFAR recipe of "Deep Residual Learning" (section 4.2: pad 4, random 32x32 crop); on small
  images it is a random translation by up to `padding` pixels.
  """
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


def random_flip_left_right(images: jax.Array, key: jax.Array) -> jax.Array:
  """Mirrors each NHWC image horizontally with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_resized_crop(images: jax.Array, key: jax.Array, size: tuple[int, int] | None = None,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
  """A random crop of each image, resized (bilinear, antialiased) to `size` (default: the input's).

  As torchvision's RandomResizedCrop (SimCLR appendix A): the crop's area is a fraction
  U(scale) of the image's, its aspect ratio log-uniform in `ratio`, its position uniform.
  Departures: torchvision retries up to 10 times for a box that fits and else takes a centre crop;
  here a box too wide or tall is clipped to the image, so the draw is one shot and jit-able.
  Boxes are continuous (sub-pixel), not rounded to whole pixels.
  """
  n, h, w, c = images.shape
  out_h, out_w = size or (h, w)
  area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, (n,), minval=scale[0], maxval=scale[1]) * h * w
  aspect = jnp.exp(jax.random.uniform(ratio_key, (n,), minval=jnp.log(ratio[0]),
                                      maxval=jnp.log(ratio[1])))
  crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, w)
  crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, h)
  top = jax.random.uniform(y_key, (n,)) * (h - crop_h)
  left = jax.random.uniform(x_key, (n,)) * (w - crop_w)
  factor = jnp.stack([out_h / crop_h, out_w / crop_w], axis=1)  # output pixels per input pixel
  shift = -jnp.stack([top, left], axis=1) * factor

  def one(image, factor, shift):
    return jax.image.scale_and_translate(image, (out_h, out_w, c), (0, 1), factor, shift,
                                         'linear', antialias=True)

  return jax.vmap(one)(images.astype(jnp.float32), factor, shift)


# torchvision's rgb_to_grayscale weights; numpy so that importing starts no JAX backend
# (jax.distributed.initialize must come first on a multi-host run).
_LUMA = np.array([0.2989, 0.587, 0.114], np.float32)


def grayscale(images: jax.Array) -> jax.Array:
  """ITU-R 601 luma, kept in 3 channels."""
  return jnp.broadcast_to(jnp.sum(images * _LUMA, axis=-1, keepdims=True), images.shape)


def random_grayscale(images: jax.Array, key: jax.Array, prob: float = 0.2) -> jax.Array:
  """Each image turned to grey with probability `prob` (SimCLR: 0.2)."""
  apply = jax.random.bernoulli(key, prob, (images.shape[0], 1, 1, 1))
  return jnp.where(apply, grayscale(images), images)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """[..., 3] in [0, 1] -> hue, saturation, value in [0, 1]."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = jnp.max(rgb, axis=-1)
  spread = value - jnp.min(rgb, axis=-1)
  saturation = jnp.where(value > 0, spread / jnp.where(value > 0, value, 1.0), 0.0)
  safe = jnp.where(spread > 0, spread, 1.0)
  hue = jnp.where(value == r, (g - b) / safe, jnp.where(value == g, 2.0 + (b - r) / safe,
                                                         4.0 + (r - g) / safe))
  hue = jnp.where(spread > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """The inverse of `rgb_to_hsv`."""
  hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  k = (jnp.array([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
  return value[..., None] - value[..., None] * saturation[..., None] * jnp.clip(
      jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _jitter_one(image: jax.Array, key: jax.Array, strengths: tuple[float, float, float, float]
                ) -> jax.Array:
  """torchvision's ColorJitter on one image: the four adjustments in a random order."""
  brightness, contrast, saturation, hue = strengths
  order_key, *keys = jax.random.split(key, 5)

  def factor(k, strength):
    return jax.random.uniform(k, (), minval=max(0.0, 1.0 - strength), maxval=1.0 + strength)

  def blend(x, other, f):
    return jnp.clip(other + f * (x - other), 0.0, 1.0)

  b, c, s = factor(keys[0], brightness), factor(keys[1], contrast), factor(keys[2], saturation)
  shift = jax.random.uniform(keys[3], (), minval=-hue, maxval=hue)
  def rotate_hue(x):
    hsv = rgb_to_hsv(x)
    return hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + shift) % 1.0))

  ops = [lambda x: jnp.clip(x * b, 0.0, 1.0),
         lambda x: blend(x, jnp.mean(grayscale(x)), c),
         lambda x: blend(x, grayscale(x), s),
         rotate_hue]
  order = jax.random.permutation(order_key, 4)
  for slot in range(4):
    image = jax.lax.switch(order[slot], ops, image)
  return image


def color_jitter(images: jax.Array, key: jax.Array, brightness: float = 0.8, contrast: float = 0.8,
                 saturation: float = 0.8, hue: float = 0.2, prob: float = 0.8) -> jax.Array:
  """SimCLR's colour distortion (appendix A, strength s: 0.8 s, 0.8 s, 0.8 s, 0.2 s, applied with
  probability 0.8): brightness scales by U(1 - b, 1 + b), contrast and saturation blend with the
  mean grey and the grey image by U(1 - c, 1 + c), hue shifts by U(-h, h) of a turn, in a random
  order per image; values clipped to [0, 1] after each step, as torchvision."""
  apply_key, jitter_key = jax.random.split(key)
  keys = jax.random.split(jitter_key, images.shape[0])
  strengths = (brightness, contrast, saturation, hue)
  jittered = jax.vmap(lambda x, k: _jitter_one(x, k, strengths))(images, keys)
  apply = jax.random.bernoulli(apply_key, prob, (images.shape[0], 1, 1, 1))
  return jnp.where(apply, jittered, images)


def gaussian_blur(images: jax.Array, key: jax.Array, kernel_size: int,
                  sigma: tuple[float, float] = (0.1, 2.0), prob: float = 0.5) -> jax.Array:
  """Each image blurred with probability `prob` by a separable Gaussian of `kernel_size` taps (odd;
  SimCLR: 10% of the image side) and standard deviation U(sigma) pixels, reflect-padded."""
  if kernel_size % 2 != 1:
    raise ValueError(f'the blur kernel size must be odd, got {kernel_size}')
  n, h, w, _ = images.shape
  apply_key, sigma_key = jax.random.split(key)
  sigmas = jax.random.uniform(sigma_key, (n,), minval=sigma[0], maxval=sigma[1])
  radius = kernel_size // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernels = jnp.exp(-0.5 * (taps[None, :] / sigmas[:, None]) ** 2)
  kernels = kernels / jnp.sum(kernels, axis=1, keepdims=True)  # [n, kernel_size]
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='reflect')
  weights = kernels[:, :, None, None, None]
  rows = sum(weights[:, t] * padded[:, t:t + h] for t in range(kernel_size))
  blurred = sum(weights[:, t] * rows[:, :, t:t + w] for t in range(kernel_size))
  apply = jax.random.bernoulli(apply_key, prob, (n, 1, 1, 1))
  return jnp.where(apply, blurred, images)


AUGMENTATIONS = ('random_crop_padding', 'random_flip')


def from_config(config) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The on-device augmentation a config names, as `(images, key) -> images`.

  config keys: `random_crop_padding` (pixels of zero padding before a random crop of the original
  size; 0 = off) and `random_flip` (horizontal flips with probability 1/2), applied in that order.
  """
  unknown = sorted(set(config) - set(AUGMENTATIONS))
  if unknown:
    raise ConfigError(f'unknown augmentation {", ".join(unknown)}; valid: {", ".join(AUGMENTATIONS)}')
  padding, flip = config.get('random_crop_padding', 0), config.get('random_flip', False)

  def apply(images: jax.Array, key: jax.Array) -> jax.Array:
    crop_key, flip_key = jax.random.split(key)
    if padding:
      images = random_crop_with_padding(images, crop_key, padding)
    if flip:
      images = random_flip_left_right(images, flip_key)
    return images

  return apply
