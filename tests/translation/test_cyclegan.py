"""CycleGAN: the least-squares GAN, cycle and identity losses by their definitions, the ResNet
generator's shapes, and the reference counts."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.translation import cyclegan


def test_lsgan_losses_equal_their_closed_forms():
  real = jnp.array([1.0, 0.5, 2.0])
  fake = jnp.array([0.0, -1.0, 0.5])
  np.testing.assert_allclose(cyclegan.lsgan_discriminator_loss(real, fake),
                             0.5 * (np.mean([0.0, 0.25, 1.0]) + np.mean([0.0, 1.0, 0.25])),
                             rtol=1e-6)
  np.testing.assert_allclose(cyclegan.lsgan_generator_loss(fake), np.mean([1.0, 4.0, 0.25]),
                             rtol=1e-6)
  # The optimum of each player: D says 1 on reals and 0 on fakes; G makes D say 1.
  assert float(cyclegan.lsgan_discriminator_loss(jnp.ones(4), jnp.zeros(4))) == 0.0
  assert float(cyclegan.lsgan_generator_loss(jnp.ones(4))) == 0.0


def test_cycle_loss_is_zero_for_inverse_mappings_and_identity_loss_is_not():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  y = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  def g(v):
    return 2.0 * v + 1.0
  def f(v):
    return (v - 1.0) / 2.0
  np.testing.assert_allclose(cyclegan.cycle_loss(x, f(g(x)), y, g(f(y))), 0.0, atol=1e-6)
  np.testing.assert_allclose(
      cyclegan.identity_loss(x, f(x), y, g(y)),
      np.mean(np.abs(np.asarray(y) + 1.0)) + np.mean(np.abs((np.asarray(x) + 1.0) / 2.0)),
      rtol=1e-5)
  # A mapping that is not undone costs its mean absolute error, in both directions.
  np.testing.assert_allclose(cyclegan.cycle_loss(x, x + 0.5, y, y - 0.25), 0.75, rtol=1e-6)
  assert cyclegan.CYCLE_WEIGHT == 10.0 and cyclegan.IDENTITY_WEIGHT * cyclegan.CYCLE_WEIGHT == 5.0
  assert cyclegan.POOL_SIZE == 50


def test_resnet_generator_keeps_the_image_size_and_range():
  model = cyclegan.ResNetGenerator(features=4, num_blocks=2)
  x = jax.random.normal(jax.random.key(0), (2, 20, 28, 3))
  out = model.init_with_output(jax.random.key(1), x)[0]
  assert out.shape == (2, 20, 28, 3)
  assert float(jnp.max(jnp.abs(out))) <= 1.0


def test_reference_counts_of_the_paper_presets():
  assert zoo.count_params('cyclegan_resnet_9blocks') == 11_378_179
  assert zoo.count_params('cyclegan_resnet_6blocks') == 7_837_699
  assert zoo.count_params('cyclegan_patchgan_70') == 2_764_737
