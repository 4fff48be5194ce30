"""StyleGAN2: R1 is the squared gradient norm on reals, the path-length penalty is its definition
(through an explicit Jacobian), shapes, truncation and style mixing, the official parameter counts."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.gans import stylegan2

TINY = dict(z_dim=16, w_dim=16, mapping_layers=2, channel_base=64, channel_max=16)


def test_r1_is_the_squared_gradient_norm_on_reals():
  a = jnp.linspace(0.5, 2.0, 12).reshape(1, 2, 2, 3)
  real = jax.random.normal(jax.random.key(0), (5, 2, 2, 3))

  def critic(x):  # D(x) = sum a x^2 + sum x: gradient 2 a x + 1
    return jnp.sum(a * x ** 2 + x, axis=(1, 2, 3))

  expected = np.mean(np.sum(((2 * a * real + 1) ** 2).reshape(5, -1), axis=-1))
  np.testing.assert_allclose(stylegan2.r1_penalty(critic, real), expected, rtol=1e-5)


def test_path_length_penalty_matches_its_definition():
  g = stylegan2.Generator(resolution=8, channels=3, **TINY)
  z = jax.random.normal(jax.random.key(0), (3, 16))
  variables = g.init(jax.random.key(1), z)
  ws = g.apply(variables, z, method='mapping_ws')
  chex.assert_shape(ws, (3, g.num_ws, 16))

  @jax.jit
  def synthesize(ws):
    return g.apply(variables, ws, method='synthesize')

  key = jax.random.key(2)
  penalty, new_mean, lengths = jax.jit(
      lambda ws: stylegan2.path_length_penalty(synthesize, ws, key, jnp.float32(0.5)))(ws)
  # ||J_w^T y|| with the Jacobian of each example's image with respect to its own ws.
  images = synthesize(ws)
  y = jax.random.normal(key, images.shape) / np.sqrt(8 * 8)
  expected = []
  jacobian = jax.jit(jax.jacrev(lambda w: synthesize(w[None])[0]))
  for b in range(3):
    jty = np.einsum('hwc,hwcld->ld', y[b], jacobian(ws[b]))  # J [8, 8, 3, L, D]
    expected.append(np.sqrt(np.mean(np.sum(jty ** 2, axis=1))))
  expected = np.array(expected)
  np.testing.assert_allclose(lengths, expected, rtol=1e-4)
  mean = 0.5 + 0.01 * (expected.mean() - 0.5)
  np.testing.assert_allclose(new_mean, mean, rtol=1e-5)
  np.testing.assert_allclose(penalty, np.mean((expected - mean) ** 2), rtol=1e-4)


def test_generator_truncation_mixing_and_discriminator_shapes():
  g = stylegan2.Generator(resolution=8, **TINY)
  z, z2 = jax.random.normal(jax.random.key(0), (2, 4, 16))
  variables = jax.jit(g.init)(jax.random.key(1), z)
  apply = jax.jit(g.apply, static_argnames=('method', 'mutable'))
  images = apply(variables, z)
  chex.assert_shape(images, (4, 8, 8, 3))
  chex.assert_tree_all_finite(images)
  # Noise is random only with a 'noise' rng; with it, images change.
  noisy = apply(variables, z, rngs={'noise': jax.random.key(3)})
  assert noisy.shape == images.shape
  # psi = 0 gives w_avg at every layer: one image for every z.
  variables = jax.tree.map(lambda x: x, variables)
  variables['stats']['mapping']['w_avg'] = jnp.full((16,), 0.3)
  collapsed = apply(variables, z, truncation_psi=0.0)
  np.testing.assert_allclose(collapsed, jnp.broadcast_to(collapsed[:1], collapsed.shape), atol=1e-5)
  # Style mixing: layers before the cutoff take z's w, the rest z2's.
  ws = apply(variables, z, z2=z2, cutoff=3, method='mapping_ws')
  w1 = apply(variables, z, method='mapping_ws')
  w2 = apply(variables, z2, method='mapping_ws')
  np.testing.assert_allclose(ws[:, :3], w1[:, :3], rtol=1e-6)
  np.testing.assert_allclose(ws[:, 3:], w2[:, 3:], rtol=1e-6)
  # w_avg moves towards the batch mean when updated.
  _, updated = jax.jit(lambda v, z: g.apply(v, z, update_w_avg=True, mutable=['stats']))(variables, z)
  w_mean = jnp.mean(g.apply(variables, z, method=lambda m, z: m.mapping(z)), axis=0)
  np.testing.assert_allclose(updated['stats']['mapping']['w_avg'], w_mean + 0.995 * (0.3 - w_mean),
                             rtol=1e-5)
  d = stylegan2.Discriminator(channel_base=64, channel_max=16)
  d_vars = jax.jit(d.init)(jax.random.key(4), images)
  logits = jax.jit(d.apply)(d_vars, images)
  chex.assert_shape(logits, (4,))


def test_config_f_counts_equal_the_official_totals():
  assert stylegan2.reference_counts(1024) == stylegan2.OFFICIAL_F_COUNTS
  # The logged run's generator: the 2-layer mapping network.
  assert stylegan2.reference_counts(1024, mapping_layers=2)[0] == 28_794_124


@pytest.mark.parametrize('name', ['stylegan2_f', 'stylegan2_32'])
def test_presets_count_the_reference(name):
  g, d = zoo.count_params(f'{name}_generator'), zoo.count_params(f'{name}_discriminator')
  assert (g, d) == (zoo.get(f'{name}_generator').reference_params,
                    zoo.get(f'{name}_discriminator').reference_params)
  if name == 'stylegan2_f':
    assert (g, d) == stylegan2.OFFICIAL_F_COUNTS
