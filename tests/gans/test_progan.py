"""ProGAN: the fade-in of a new resolution (alpha = 0: the upsampled old output; alpha = 1: the new
block only), in G and D; WGAN-GP's drift term; Table 2's counts (23.1M each)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.gans import progan, wgan_gp

TINY = dict(fmap_base=64, fmap_max=8)


def _perturb(variables, name):
  params = dict(variables['params'])
  params[name] = jax.tree.map(lambda p: p + 1.0, params[name])
  return {'params': params}


def test_generator_fade_in():
  g = progan.Generator(resolution=16, channels=3, z_dim=8, **TINY)
  z = jax.random.normal(jax.random.key(0), (2, 8))
  v = g.init(jax.random.key(1), z)
  assert {f'b{r}_torgb' for r in (4, 8, 16)} <= set(v['params'])
  old = g.apply(v, z, resolution=4)
  assert old.shape == (2, 4, 4, 3)
  np.testing.assert_allclose(g.apply(v, z, resolution=8, alpha=0.0), progan.upsample_nearest(old),
                             atol=1e-6)
  new = g.apply(v, z, resolution=8, alpha=1.0)
  assert not np.allclose(new, progan.upsample_nearest(old), atol=1e-3)
  # alpha = 1 does not see the old toRGB; alpha = 0 does not see the new block.
  np.testing.assert_allclose(g.apply(_perturb(v, 'b4_torgb'), z, resolution=8, alpha=1.0), new,
                             atol=1e-6)
  np.testing.assert_allclose(g.apply(_perturb(v, 'b8_torgb'), z, resolution=8, alpha=0.0),
                             progan.upsample_nearest(old), atol=1e-6)
  half = g.apply(v, z, resolution=8, alpha=0.25)
  np.testing.assert_allclose(half, 0.75 * progan.upsample_nearest(old) + 0.25 * new, atol=1e-5)
  assert g.apply(v, z).shape == (2, 16, 16, 3)


def test_discriminator_fade_in():
  d = progan.Discriminator(resolution=16, **TINY)
  x16 = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  v = d.init(jax.random.key(1), x16)
  x8 = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))
  old = d.apply(v, progan.avg_pool(x8))
  np.testing.assert_allclose(d.apply(v, x8, alpha=0.0), old, rtol=1e-5, atol=1e-6)
  new = d.apply(v, x8, alpha=1.0)
  assert not np.allclose(new, old, atol=1e-3)
  np.testing.assert_allclose(d.apply(_perturb(v, 'b4_fromrgb'), x8, alpha=1.0), new, rtol=1e-5,
                             atol=1e-6)
  assert d.apply(v, x16).shape == (4,)


def test_pixel_norm_of_the_latent_makes_the_generator_scale_invariant_in_z():
  g = progan.Generator(resolution=8, channels=3, z_dim=8, **TINY)
  z = jax.random.normal(jax.random.key(0), (2, 8))
  v = g.init(jax.random.key(1), z)
  np.testing.assert_allclose(g.apply(v, 5.0 * z), g.apply(v, z), rtol=1e-4, atol=1e-5)


def test_drift_term():
  real, fake = jnp.asarray([1.0, 3.0]), jnp.asarray([0.5, -0.5])
  loss = wgan_gp.critic_loss(real, fake, jnp.float32(0.0), drift_weight=wgan_gp.DRIFT_WEIGHT)
  np.testing.assert_allclose(loss, 0.0 - 2.0 + 0.001 * 5.0, rtol=1e-6)


def test_paper_counts_are_23_1m():
  for name in ('progan_1024_generator', 'progan_1024_discriminator'):
    assert round(zoo.count_params(name) / 1e6, 1) == 23.1
