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


def test_random_resized_crop_whole_image_is_identity_and_crops_resize():
  images = jax.random.uniform(jax.random.key(0), (6, 8, 8, 3))
  whole = augment.random_resized_crop(images, jax.random.key(1), scale=(1.0, 1.0), ratio=(1.0, 1.0))
  np.testing.assert_allclose(whole, images, atol=1e-6)
  # A horizontal ramp: every crop is an increasing ramp spanning part of [0, 1], resized to 4x4.
  ramp = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 16)[None, None, :, None], (64, 16, 16, 3))
  crops = np.asarray(jax.jit(lambda x, k: augment.random_resized_crop(x, k, (4, 4), (0.1, 0.5)))(
      ramp, jax.random.key(2)))
  assert crops.shape == (64, 4, 4, 3)
  assert np.all(np.diff(crops[:, 0, :, 0], axis=1) > 0)
  spans = crops[:, 0, -1, 0] - crops[:, 0, 0, 0]
  assert spans.max() < 0.9 and len(np.unique(np.round(crops[:, 0, 0, 0], 4))) > 30


def test_color_jitter_pieces():
  images = jax.random.uniform(jax.random.key(0), (32, 4, 4, 3))
  np.testing.assert_allclose(augment.hsv_to_rgb(augment.rgb_to_hsv(images)), images, atol=1e-5)
  same = augment.color_jitter(images, jax.random.key(1), 0.0, 0.0, 0.0, 0.0, prob=1.0)
  np.testing.assert_allclose(same, images, atol=1e-5)
  np.testing.assert_array_equal(augment.color_jitter(images, jax.random.key(1), prob=0.0), images)
  out = jax.jit(augment.color_jitter)(images, jax.random.key(2))
  changed = np.asarray(jnp.any(jnp.abs(out - images) > 1e-4, axis=(1, 2, 3)))
  assert 16 < changed.sum() < 32 and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  # Grey images stay grey under saturation and hue changes; hue alone keeps the value (max channel).
  grey = augment.grayscale(images)
  np.testing.assert_allclose(augment.color_jitter(grey, jax.random.key(3), 0.0, 0.0, 0.8, 0.2, 1.0),
                             grey, atol=2e-4)  # the luma weights sum to 0.9999
  hue = augment.color_jitter(images, jax.random.key(4), 0.0, 0.0, 0.0, 0.5, prob=1.0)
  np.testing.assert_allclose(hue.max(-1), images.max(-1), atol=1e-5)
  assert float(jnp.abs(hue - images).max()) > 0.1


def test_grayscale_uses_luma_and_its_probability():
  images = jax.random.uniform(jax.random.key(0), (1000, 2, 2, 3))
  out = np.asarray(augment.random_grayscale(images, jax.random.key(1), prob=0.2))
  grey = np.all(out == out[..., :1], axis=(1, 2, 3))
  assert 150 < grey.sum() < 250
  expected = np.asarray(images[grey]) @ np.array([0.2989, 0.587, 0.114])
  np.testing.assert_allclose(out[grey][..., 0], expected, rtol=1e-5)
  np.testing.assert_array_equal(out[~grey], np.asarray(images)[~grey])


def test_gaussian_blur_keeps_constants_and_spreads_an_impulse_symmetrically():
  flat = jnp.full((4, 9, 9, 3), 0.3)
  np.testing.assert_allclose(augment.gaussian_blur(flat, jax.random.key(0), 5, prob=1.0), flat,
                             rtol=1e-6)
  impulse = jnp.zeros((4, 9, 9, 1)).at[:, 4, 4].set(1.0)
  out = np.asarray(jax.jit(lambda x, k: augment.gaussian_blur(x, k, 5, (0.5, 2.0), 1.0))(
      impulse, jax.random.key(1)))
  np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out, out[:, ::-1], atol=1e-7)
  np.testing.assert_allclose(out, out[:, :, ::-1], atol=1e-7)
  assert np.all(out[:, 4, 4, 0] < 1.0) and np.all(out[:, 4, 5, 0] > 0.0)
  assert len(np.unique(np.round(out[:, 4, 4, 0], 5))) == 4  # one sigma per image
  np.testing.assert_array_equal(augment.gaussian_blur(impulse, jax.random.key(1), 5, prob=0.0),
                                impulse)
