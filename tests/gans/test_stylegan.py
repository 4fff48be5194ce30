"""StyleGAN (v1): AdaIN normalises each channel then applies the style; mixing cutoffs; the
generator's shapes, noise and the paper's 26.2M."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.gans import stylegan


def test_adain_normalises_per_channel_then_applies_the_style():
  key = jax.random.key(0)
  # Channels with very different means and scales, per example.
  x = jax.random.normal(key, (3, 6, 5, 4)) * jnp.asarray([0.1, 1.0, 7.0, 30.0]) + jnp.asarray(
      [[5.0], [-2.0], [0.0]])[:, :, None, None]
  scale = jnp.asarray([[1.0, 2.0, 0.5, 3.0], [0.2, 1.0, 1.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
  bias = jnp.asarray([[0.0, 1.0, -1.0, 2.0], [3.0, 0.0, 0.0, 0.0], [-5.0, 5.0, 1.0, 0.5]])
  y = stylegan.adain(x, scale, bias)
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2)), bias, atol=1e-4)
  np.testing.assert_allclose(jnp.std(y, axis=(1, 2)), scale, rtol=1e-4)
  # The output depends on the input's per-channel statistics only through the normalisation.
  np.testing.assert_allclose(stylegan.adain(3.0 * x + 1.0, scale, bias), y, rtol=1e-4, atol=1e-4)


def test_mixing_cutoffs():
  cut = stylegan.mixing_cutoffs(jax.random.key(0), 4000, 10)
  assert int(cut.min()) >= 1 and int(cut.max()) <= 10
  # 10% unmixed, the rest uniform over the switch layers 1..9.
  np.testing.assert_allclose([float(jnp.mean(cut == c)) for c in range(1, 11)], [0.1] * 10, atol=0.02)
  assert bool(jnp.all(stylegan.mixing_cutoffs(jax.random.key(0), 50, 10, prob=0.0) == 10))


def test_generator_shapes_noise_mixing_and_count():
  g = stylegan.Generator(resolution=8, z_dim=8, w_dim=8, mapping_layers=2, fmap_base=32,
                         fmap_max=8)
  z, z2 = jax.random.normal(jax.random.key(0), (2, 2, 8))
  v = g.init(jax.random.key(1), z)
  assert sum(p.size for p in jax.tree.leaves(v['params'])) == stylegan.reference_counts(
      8, z_dim=8, w_dim=8, mapping_layers=2, fmap_base=32, fmap_max=8)
  images = g.apply(v, z)
  assert images.shape == (2, 8, 8, 3) and g.num_ws == 4
  # Noise strengths start at 0: noise changes nothing until they are learned.
  np.testing.assert_allclose(g.apply(v, z, rngs={'noise': jax.random.key(3)}), images, atol=1e-6)
  ws = g.apply(v, z, z2=z2, cutoff=jnp.asarray([4, 2]), method='mapping_ws')
  mixed = g.apply(v, ws, method='synthesize')
  np.testing.assert_allclose(mixed[0], images[0], atol=1e-5)  # cutoff = num_ws: no mixing
  assert not np.allclose(mixed[1], images[1], atol=1e-3)


def test_paper_count_is_26_2m():
  assert round(zoo.count_params('stylegan_1024_generator') / 1e6, 1) == 26.2
