"""The perceptual losses of Gatys et al. and Johnson et al.: definitions and stated properties."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.style import gatys, perceptual


def _features(key, shape=(2, 5, 7, 4)):
  return jax.random.normal(key, shape)


def test_gram_matrix_is_f_f_transpose_over_its_normalisation():
  f = _features(jax.random.key(0))
  flat = np.asarray(f).reshape(2, 35, 4)
  expected = np.einsum('bki,bkj->bij', flat, flat)  # F F^T with F = [C, HW]
  chex.assert_trees_all_close(perceptual.gram_matrix(f), expected, rtol=1e-5)
  chex.assert_trees_all_close(perceptual.gram_matrix(f, 'chw'), expected / (4 * 5 * 7), rtol=1e-5)
  with pytest.raises(ValueError, match='normalise'):
    perceptual.gram_matrix(f, 'hw')


def test_gram_matrix_ignores_where_features_are():
  f = _features(jax.random.key(1))
  flat = f.reshape(2, 35, 4)
  permuted = flat[:, jax.random.permutation(jax.random.key(2), 35)].reshape(2, 7, 5, 4)
  chex.assert_trees_all_close(perceptual.gram_matrix(permuted), perceptual.gram_matrix(f),
                              rtol=1e-5)
  # ... while the content (feature) loss sees the rearrangement.
  assert perceptual.feature_loss(permuted.reshape(f.shape), f) > 0.1


def test_style_losses_by_their_formulas():
  f, g = _features(jax.random.key(3)), _features(jax.random.key(4))
  a = perceptual.gram_matrix(g)
  diff = np.asarray(perceptual.gram_matrix(f) - a)
  expected = np.mean(np.sum(diff ** 2, axis=(1, 2))) / (4 * 4 ** 2 * 35 ** 2)  # eq. 4
  chex.assert_trees_all_close(perceptual.gatys_layer_style_loss(f, a), expected, rtol=1e-5)
  weights = {'a': 0.3, 'b': 0.7}
  total = perceptual.style_loss({'a': f, 'b': f}, {'a': a, 'b': a}, weights)  # eq. 5
  chex.assert_trees_all_close(total, expected, rtol=1e-5)
  johnson = perceptual.johnson_layer_style_loss(f, perceptual.gram_matrix(g, 'chw'))
  chex.assert_trees_all_close(johnson, np.mean(np.sum((diff / 140) ** 2, axis=(1, 2))), rtol=1e-5)


def test_content_and_feature_losses():
  f, p = _features(jax.random.key(5)), _features(jax.random.key(6))
  squared = np.asarray(f - p) ** 2
  chex.assert_trees_all_close(perceptual.gatys_content_loss(f, p),
                              0.5 * squared.sum() / 2, rtol=1e-5)  # eq. 1, batch mean
  chex.assert_trees_all_close(perceptual.feature_loss(f, p), squared.mean(), rtol=1e-5)
  chex.assert_trees_all_close(perceptual.feature_loss(f, p, 'hw'), squared.sum(-1).mean(),
                              rtol=1e-5)
  assert perceptual.gatys_content_loss(f, f) == 0.0


def test_total_variation_is_zero_on_flat_images_only():
  flat = jnp.full((1, 6, 6, 3), 0.4)
  assert perceptual.total_variation(flat) == 0.0
  ramp = jnp.broadcast_to(jnp.arange(6.0)[None, :, None, None], (1, 6, 6, 3))
  chex.assert_trees_all_close(perceptual.total_variation(ramp), 5 * 6 * 3 * 1.0)


@pytest.fixture(scope='module')
def vgg():
  model = zoo.build('vgg19_bn_mini')
  variables = jax.jit(lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False))(
      jax.random.key(0))
  return model, variables


def test_feature_extractor_names_vgg19_layers(vgg):
  model, variables = vgg
  layers = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu4_2', 'relu5_1', 'relu5_4')
  features = jax.jit(perceptual.FeatureExtractor(model, layers))(variables, jnp.zeros((2, 32, 32, 3)))
  widths = {1: 16, 2: 32, 3: 64, 4: 128, 5: 128}
  for name in layers:
    block = int(name[4])
    size = 32 // 2 ** (block - 1)
    chex.assert_shape(features[name], (2, size, size, widths[block]))
  with pytest.raises(ValueError, match='relu6_1'):
    perceptual.FeatureExtractor(model, ('relu6_1',))(variables, jnp.zeros((1, 32, 32, 3)))


def test_gatys_style_loss_zero_for_the_style_image_positive_otherwise(vgg):
  model, variables = vgg
  model = model.clone(pooling='avg')
  keys = jax.random.split(jax.random.key(7), 2)
  content, style = (jax.random.uniform(k, (1, 32, 32, 3)) for k in keys)
  objective = gatys.GatysObjective(model, variables, content, style)
  _, at_style = jax.jit(objective)(style)
  _, at_content = jax.jit(objective)(content)
  # Zero up to float rounding: the targets are computed outside the jitted objective, and XLA may
  # fuse the two computations differently (jaxlib 0.12.1 leaves 4e-12 here, 0.12.0.1 left 0).
  assert at_style['style_loss'] < 1e-6 * at_content['style_loss']
  assert at_content['content_loss'] < 1e-6 * at_style['content_loss']
  assert at_content['style_loss'] > 0 and at_style['content_loss'] > 0
  # The loss falls along its negative gradient (what the optimisation relies on).
  image = gatys.initial_image(content, 'noise', jax.random.key(8))
  loss, grad = jax.jit(jax.value_and_grad(lambda x: objective(x)[0]))(image)
  assert jax.jit(objective)(image - 1e-3 * grad / jnp.abs(grad).max())[0] < loss
