"""Image augmentations as pure JAX functions of a batch and a key, run inside the jitted train step.

On the device they cost next to nothing and keep the host pipeline free; keyed by the step's key,
they give the same augmented global batch whatever the number of devices or processes.
"""

from __future__ import annotations

from typing import Callable

import jax
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
