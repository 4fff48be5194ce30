"""SPADE: modulation shapes, spatially constant gamma/beta for constant label maps, the parameter-free
normalisation it modulates, its locality, the generator's shapes and the hinge / feature-matching
losses."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.translation import spade


def _one_hot(labels, k):
  return jax.nn.one_hot(labels, k)


def test_modulation_has_the_activations_shape_from_a_resized_label_map():
  model = spade.SPADE(hidden=8)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 5))
  labels = _one_hot(jax.random.randint(jax.random.key(1), (2, 32, 32), 0, 3), 3)
  variables = model.init(jax.random.key(2), x, labels)
  seen = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, spade.SPADEModulation):
      seen.append((args[0].shape, out[0].shape, out[1].shape))
    return out

  with nn.intercept_methods(record):
    out = model.apply(variables, x, labels)
  assert out.shape == x.shape
  assert seen == [((2, 8, 8, 3), (2, 8, 8, 5), (2, 8, 8, 5))]
  # BatchNorm without affine parameters: only the modulation convolutions learn.
  assert set(variables['params']) == {'SPADEModulation_0'}
  assert set(variables['batch_stats']['BatchNorm_0']) == {'mean', 'var'}


def test_constant_label_maps_give_spatially_constant_gamma_and_beta():
  model = spade.SPADEModulation(channels=4, hidden=8)
  labels = jnp.broadcast_to(_one_hot(jnp.array(2), 3), (1, 12, 12, 3))
  variables = model.init(jax.random.key(0), labels)
  # Random biases, so the zero padding shows at the border.
  variables = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape),
                           variables)
  for out in model.apply(variables, labels):
    interior = np.asarray(out[0, 2:-2, 2:-2])
    np.testing.assert_allclose(interior, np.broadcast_to(interior[:1, :1], interior.shape),
                               atol=1e-5)
    assert not np.allclose(out[0, 0, 0], out[0, 5, 5], atol=1e-4)  # the border sees the padding
  other = jnp.broadcast_to(_one_hot(jnp.array(0), 3), (1, 12, 12, 3))
  assert not np.allclose(model.apply(variables, other)[0][0, 5, 5],
                         model.apply(variables, labels)[0][0, 5, 5])


def test_spade_modulates_a_parameter_free_batch_norm_locally():
  model = spade.SPADE(hidden=8)
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 16, 16, 2))
  labels = jnp.zeros((4, 16, 16), jnp.int32)
  variables = model.init(jax.random.key(1), x, _one_hot(labels, 3))
  zeroed = jax.tree.map(jnp.zeros_like, variables['params'])
  out, _ = model.apply({**variables, 'params': zeroed}, x, _one_hot(labels, 3), train=True,
                       mutable=['batch_stats'])
  np.testing.assert_allclose(out.mean((0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std((0, 1, 2)), 1.0, atol=1e-3)
  # A label change in one corner moves the output there only (two 3x3 convolutions: 2 pixels).
  changed = labels.at[:, :3, :3].set(1)
  base = model.apply(variables, x, _one_hot(labels, 3))
  moved = model.apply(variables, x, _one_hot(changed, 3))
  diff = np.abs(np.asarray(moved - base)).sum(axis=(0, 3))
  assert diff[:5, :5].sum() > 0 and diff[5:, :].sum() == 0 and diff[:, 5:].sum() == 0


def test_generator_maps_label_maps_to_images_of_their_size():
  model = spade.SPADEGenerator(features=1, hidden=2)
  labels = _one_hot(jax.random.randint(jax.random.key(0), (2, 32, 32), 0, 6), 6)

  variables = model.init(jax.random.key(1), labels)
  out, _ = model.apply(variables, labels, train=True, mutable=['batch_stats'])
  assert out.shape == (2, 32, 32, 3) and float(jnp.max(jnp.abs(out))) <= 1.0


def test_hinge_and_feature_matching_losses():
  real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 1.0])
  np.testing.assert_allclose(spade.hinge_discriminator_loss(real, fake),
                             np.mean([0.0, 0.5, 2.0]) + np.mean([0.0, 1.0, 2.0]), rtol=1e-6)
  np.testing.assert_allclose(spade.hinge_generator_loss(fake), 1.0 / 3.0 * -(-2.0 + 0 + 1.0),
                             rtol=1e-6)
  a = [jnp.ones((2, 4, 4, 3)), jnp.zeros((2, 2, 2, 5))]
  b = [jnp.ones((2, 4, 4, 3)) * 1.5, jnp.ones((2, 2, 2, 5))]
  np.testing.assert_allclose(spade.feature_matching_loss(a, a), 0.0)
  np.testing.assert_allclose(spade.feature_matching_loss(a, b), 1.5, rtol=1e-6)
