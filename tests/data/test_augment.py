"""On-device augmentations: crops of the padded image are translations; flips mirror half the batch."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.data import augment


def test_crop_with_padding_is_a_translation_within_the_padding():
  images = jax.random.uniform(jax.random.key(0), (64, 5, 6, 2)) + 1.0  # no zeros in the images
  out = np.asarray(augment.random_crop_with_padding(images, jax.random.key(1), padding=2))
  assert out.shape == images.shape
  offsets = set()
  for image, shifted in zip(np.asarray(images), out):
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
    matches = [(dy, dx) for dy in range(5) for dx in range(5)
               if np.array_equal(padded[dy:dy + 5, dx:dx + 6], shifted)]
    assert matches, 'not a crop of the padded image'
    offsets.add(matches[0])
  assert len(offsets) > 10  # offsets are drawn, not fixed
  np.testing.assert_array_equal(augment.random_crop_with_padding(images, jax.random.key(1), 0), images)


def test_flip_mirrors_about_half_the_images():
  images = jax.random.uniform(jax.random.key(0), (1000, 4, 4, 1))
  out = augment.random_flip_left_right(images, jax.random.key(2))
  flipped = jnp.all(out == images[:, :, ::-1], axis=(1, 2, 3))
  kept = jnp.all(out == images, axis=(1, 2, 3))
  assert bool(jnp.all(flipped | kept))
  assert 400 < int(flipped.sum()) < 600
