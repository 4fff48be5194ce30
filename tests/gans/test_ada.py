"""ADA: p moves the right way on over- and under-fitting discriminators; p = 0 is the identity;
pixel blitting only moves pixels; the pipeline is differentiable."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.gans import ada

OFF = ada.AugmentConfig(**{f.name: False for f in dataclasses.fields(ada.AugmentConfig)
                           if f.type in (bool, 'bool')})


def test_p_moves_the_right_way_on_over_and_under_fitting_discriminators():
  real = jax.random.normal(jax.random.key(0), (64, 4))

  def overfit(x):  # confidently positive on every real image: r_t = 1
    return 5.0 + jnp.sum(x, -1) * 0.01

  def underfit(x):  # a coin: about half the reals get a negative logit, r_t ~ 0
    return jnp.sum(x, -1)

  p = jnp.float32(0.3)
  r_over, r_under = ada.overfitting_heuristic(overfit(real)), ada.overfitting_heuristic(underfit(real))
  assert r_over == 1.0 and abs(float(r_under)) < 0.4
  up = ada.adjust_p(p, r_over, num_images=256, speed_images=1000)
  down = ada.adjust_p(p, r_under, num_images=256, speed_images=1000)
  np.testing.assert_allclose([up, down], [0.3 + 0.256, 0.3 - 0.256], rtol=1e-6)
  # Clipped at 0 and 1; exactly at the target it stays.
  assert ada.adjust_p(jnp.float32(0.1), r_under, 256, speed_images=1000) == 0.0
  assert ada.adjust_p(jnp.float32(0.9), r_over, 256, speed_images=1000) == 1.0
  assert ada.adjust_p(p, jnp.float32(0.6), 256) == p


def test_p_zero_is_the_identity_and_p_one_changes_every_image():
  images = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3), minval=-1, maxval=1)
  augment = jax.jit(ada.augment)
  np.testing.assert_allclose(augment(jax.random.key(2), images, 0.0), images, atol=1e-5)
  out = augment(jax.random.key(2), images, 1.0)
  chex.assert_shape(out, images.shape)
  assert np.all(np.max(np.abs(np.asarray(out - images)), axis=(1, 2, 3)) > 1e-2)


def test_pixel_blitting_only_moves_pixels_and_gradients_flow():
  cfg = dataclasses.replace(OFF, xflip=True, rotate90=True, xint=True)
  images = jax.random.uniform(jax.random.key(3), (8, 8, 8, 3))
  out = np.asarray(jax.jit(lambda k, x: ada.augment(k, x, 1.0, cfg))(jax.random.key(4), images))
  for b in range(8):  # each output pixel is one of the input pixels, exactly
    pixels = {tuple(np.round(v, 5)) for v in np.asarray(images[b]).reshape(-1, 3)}
    assert all(tuple(np.round(v, 5)) in pixels for v in out[b].reshape(-1, 3))
  # x-flip alone: every image is itself or its mirror, and both happen.
  flip = dataclasses.replace(OFF, xflip=True)
  out = np.asarray(ada.augment(jax.random.key(5), images, 1.0, flip))
  mirrored = [np.allclose(out[b], images[b, :, ::-1], atol=1e-5) for b in range(8)]
  same = [np.allclose(out[b], images[b], atol=1e-5) for b in range(8)]
  assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)
  # Differentiable: D's gradient reaches the images through the full pipeline.
  grads = jax.grad(lambda x: jnp.sum(ada.augment(jax.random.key(6), x, 1.0) * x))(images)
  chex.assert_tree_all_finite(grads)
  assert float(jnp.max(jnp.abs(grads))) > 0


def test_colour_transforms_keep_grey_on_the_luma_axis_under_saturation_and_hue():
  cfg = dataclasses.replace(OFF, hue=True, saturation=True)
  grey = jnp.broadcast_to(jnp.linspace(-1, 1, 16).reshape(1, 4, 4, 1), (4, 4, 4, 3))
  np.testing.assert_allclose(ada.augment(jax.random.key(7), grey, 1.0, cfg), grey, atol=1e-5)
  colour = jax.random.uniform(jax.random.key(8), (4, 4, 4, 3))
  assert float(jnp.max(jnp.abs(ada.augment(jax.random.key(7), colour, 1.0, cfg) - colour))) > 1e-2
