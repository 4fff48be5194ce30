"""The GAN family's stated properties: losses in closed form, the gradient penalty by its definition,
output ranges and the DCGAN reference shapes."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.gans import cgan, dcgan, gan, wgan_gp

LOGITS = np.array([-30.0, -2.0, 0.0, 0.5, 3.0, 40.0], np.float32)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_gan_losses_equal_their_closed_forms_on_known_logits():
  real, fake = LOGITS[1:5], LOGITS[[4, 2, 3, 1]]
  d_real, d_fake = _sigmoid(real), _sigmoid(fake)
  np.testing.assert_allclose(gan.discriminator_loss(real, fake),
                             -np.mean(np.log(d_real)) - np.mean(np.log(1 - d_fake)), rtol=1e-6)
  np.testing.assert_allclose(gan.minimax_generator_loss(fake), np.mean(np.log(1 - d_fake)), rtol=1e-6)
  np.testing.assert_allclose(gan.non_saturating_generator_loss(fake), -np.mean(np.log(d_fake)),
                             rtol=1e-6)
  # D(0) = 1/2: every loss is a multiple of log 2.
  zero = jnp.zeros(3)
  np.testing.assert_allclose(gan.discriminator_loss(zero, zero), 2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(gan.minimax_generator_loss(zero), -np.log(2), rtol=1e-6)
  # Written on logits: finite where sigmoid rounds to 0 or 1 in float32.
  for value in (gan.discriminator_loss(LOGITS, LOGITS), gan.minimax_generator_loss(LOGITS),
                gan.non_saturating_generator_loss(LOGITS)):
    chex.assert_tree_all_finite(value)
  np.testing.assert_allclose(gan.non_saturating_generator_loss(jnp.array([-40.0])), 40.0, rtol=1e-6)


def test_the_minimax_loss_saturates_where_the_non_saturating_one_does_not():
  # Section 3: early on D rejects fakes (logit << 0); log(1 - D) then has a vanishing gradient.
  confident = jnp.array([-8.0])
  minimax = jax.grad(gan.minimax_generator_loss)(confident)
  non_saturating = jax.grad(gan.non_saturating_generator_loss)(confident)
  np.testing.assert_allclose(minimax, -_sigmoid(-8.0), rtol=1e-5)  # d/dl -softplus(l)
  np.testing.assert_allclose(non_saturating, -_sigmoid(8.0), rtol=1e-5)
  assert abs(non_saturating[0]) > 1000 * abs(minimax[0])


def test_wgan_losses_equal_their_closed_forms():
  real, fake = jnp.array([1.0, 2.0, 4.0]), jnp.array([-1.0, 0.5, 0.0])
  np.testing.assert_allclose(wgan_gp.critic_loss(real, fake, jnp.float32(0.3)),
                             (-0.5 / 3) - (7 / 3) + 10 * 0.3, rtol=1e-5)
  np.testing.assert_allclose(wgan_gp.generator_loss(fake), 0.5 / 3, rtol=1e-6)


class _SmoothCritic(nn.Module):
  """A tanh critic: smooth, so central differences converge to its gradient."""

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(12)(x.reshape(x.shape[0], -1)))
    return nn.Dense(1)(h)[:, 0]


def test_gradient_penalty_equals_its_definition_by_finite_differences():
  shape = (5, 3, 3, 1)
  real = jax.random.uniform(jax.random.key(0), shape, minval=-1, maxval=1)
  fake = jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)
  model = _SmoothCritic()
  params = model.init(jax.random.key(2), real)
  # A scale that makes gradient norms straddle 1, so the penalty is not dominated by either side.
  params = jax.tree.map(lambda p: 3.0 * p, params)

  def critic(x):
    return model.apply(params, x)

  key = jax.random.key(3)
  x_hat = wgan_gp.interpolates(real, fake, key)
  # x^ = eps x + (1 - eps) x~ with one eps in [0, 1] per example.
  eps = (x_hat - fake)[:, 0, 0, 0] / (real - fake)[:, 0, 0, 0]
  np.testing.assert_allclose(x_hat, eps[:, None, None, None] * real
                             + (1 - eps[:, None, None, None]) * fake, atol=1e-6)
  assert np.all((eps >= 0) & (eps <= 1)) and np.ptp(eps) > 0.05

  # Central differences of each example's score along each input coordinate.
  h, flat = 1e-2, np.asarray(x_hat).reshape(shape[0], -1)
  estimate = np.zeros_like(flat, dtype=np.float64)
  for j in range(flat.shape[1]):
    step = np.zeros_like(flat)
    step[:, j] = h
    up = critic(jnp.asarray(flat + step).reshape(shape))
    down = critic(jnp.asarray(flat - step).reshape(shape))
    estimate[:, j] = (np.asarray(up, np.float64) - np.asarray(down, np.float64)) / (2 * h)
  norms = np.linalg.norm(estimate, axis=1)
  assert norms.min() < 1 < norms.max() or np.ptp(norms) > 0.1
  np.testing.assert_allclose(wgan_gp.gradient_norms(critic, x_hat), norms, rtol=2e-3)
  np.testing.assert_allclose(wgan_gp.gradient_penalty(critic, real, fake, key),
                             np.mean((norms - 1) ** 2), rtol=5e-3, atol=1e-5)


def test_gradient_penalty_is_differentiable_in_the_critic_parameters():
  model = _SmoothCritic()
  real, fake = jnp.ones((4, 2, 2, 1)), -jnp.ones((4, 2, 2, 1))
  params = model.init(jax.random.key(0), real)
  grads = jax.grad(lambda p: wgan_gp.gradient_penalty(lambda x: model.apply(p, x), real, fake,
                                                      jax.random.key(1)))(params)
  chex.assert_tree_all_finite(grads)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize('module,extra', [
    (gan.MLPGenerator(), ()), (dcgan.Generator(image_size=16, channels=3, features=8, z_dim=100), ()),
    (cgan.ConditionalGenerator(), (np.arange(6) % 10,))], ids=['gan', 'dcgan', 'cgan'])
def test_generators_output_images_in_the_tanh_range(module, extra):
  z = jax.random.normal(jax.random.key(0), (6, module.z_dim))
  variables = module.init(jax.random.key(1), z, *extra)
  # Weights scaled up saturate the output layer: tanh's range holds, not a clipped or sigmoid one.
  variables = {**variables, 'params': jax.tree.map(lambda p: 20.0 * p, variables['params'])}
  images = module.apply(variables, z, *extra, train=False)
  chex.assert_shape(images, (6, 16, 16, 3) if isinstance(module, dcgan.Generator) else (6, 8, 8, 1))
  assert float(jnp.max(jnp.abs(images))) <= 1.0
  assert float(jnp.min(images)) < -0.99 and float(jnp.max(images)) > 0.99


def test_dcgan_64_has_the_reference_architecture():
  generator, discriminator = zoo.build('dcgan_64_generator'), zoo.build('dcgan_64_discriminator')
  z = jnp.zeros((2, 100))
  g_vars = jax.eval_shape(generator.init, jax.random.key(0), z)
  images = jax.eval_shape(lambda v: generator.apply(v, z), g_vars)
  chex.assert_shape(images, (2, 64, 64, 3))
  kernels = [p.shape for p in jax.tree.leaves(g_vars['params']) if len(p.shape) == 4]
  # The reference's ConvTranspose2d layers nz->8ngf->4ngf->2ngf->ngf->nc, kernel 4, no biases.
  assert [k[-1] for k in kernels] == [512, 256, 128, 64, 3]
  assert all(k[:2] == (4, 4) for k in kernels)
  d_vars = jax.eval_shape(discriminator.init, jax.random.key(0), jnp.zeros((2, 64, 64, 3)))
  assert [p.shape[-1] for p in jax.tree.leaves(d_vars['params']) if len(p.shape) == 4] == [
      64, 128, 256, 512, 1]
  # BatchNorm everywhere but G's output and D's input: 4 in G, 3 in D.
  assert len(g_vars['batch_stats']) == 4 and len(d_vars['batch_stats']) == 3
  assert zoo.count_params('dcgan_64_generator') == 3_576_704
  assert zoo.count_params('dcgan_64_discriminator') == 2_765_568


def test_dcgan_init_is_normal_with_stddev_002():
  generator = dcgan.Generator(image_size=32, features=32)
  params = generator.init(jax.random.key(0), jnp.zeros((1, 100)))['params']
  kernel = np.asarray(params['ConvTranspose_1']['kernel'])
  assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001
  scale = np.asarray(params['BatchNorm_1']['scale'])
  assert abs(scale.mean() - 1) < 0.01 and 0.01 < scale.std() < 0.03


def test_wgan_gp_critic_has_no_batch_norm_and_scores_examples_independently():
  critic = dcgan.Discriminator(features=8, use_batch_norm=False)
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  variables = critic.init(jax.random.key(1), x)
  assert set(variables) == {'params'}
  # An example's score does not depend on the rest of the batch (what the penalty needs).
  np.testing.assert_allclose(critic.apply(variables, x, train=True)[:2],
                             critic.apply(variables, x[:2], train=True), rtol=1e-5)
  with pytest.raises(ValueError, match='4 \\* 2\\^k'):
    critic.apply(variables, jnp.zeros((1, 12, 12, 3)))


def test_conditional_discriminator_reads_the_label():
  discriminator = cgan.ConditionalDiscriminator()
  x = jax.random.normal(jax.random.key(0), (10, 8, 8, 1))
  variables = discriminator.init(jax.random.key(1), x, jnp.zeros(10, jnp.int32))
  a = discriminator.apply(variables, x, jnp.zeros(10, jnp.int32))
  b = discriminator.apply(variables, x, jnp.arange(10))
  assert float(jnp.abs(a - b)[1:].min()) > 0 and float(jnp.abs(a - b)[0]) == 0
