"""Deformable DETR (Zhu et al. 2020): bilinear sampling, multi-scale deformable attention against a
naive per-query reference, its reduction to sampling at the reference point, and the model."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from jaxpapers.detection import deformable_detr as dd


def _scipy_sample(value, x, y):
  """value [H, W, C] at normalised (x, y): scipy's linear interpolation, zero outside the grid."""
  h, w, _ = value.shape
  coords = np.array([[y * h - 0.5], [x * w - 0.5]])
  return np.array([ndimage.map_coordinates(value[..., ch], coords, order=1,
                                           mode='grid-constant', cval=0.0)[0]
                   for ch in range(value.shape[-1])])


def test_bilinear_sample_matches_scipy_map_coordinates_inside_and_at_the_edges():
  rng = np.random.default_rng(0)
  value = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
  locations = rng.uniform(-0.15, 1.15, (2, 40, 2)).astype(np.float32)  # some outside the map
  locations[0, :4] = [[0.5 / 7, 0.5 / 5], [0.0, 0.0], [1.0, 1.0], [2.0, 0.5]]
  out = np.asarray(jax.jit(dd.bilinear_sample)(value, locations))
  expected = np.array([[_scipy_sample(value[b], *locations[b, k]) for k in range(40)]
                       for b in range(2)])
  np.testing.assert_allclose(out, expected, atol=1e-5)
  np.testing.assert_allclose(out[0, 0], value[0, 0, 0], atol=1e-6)  # a pixel centre
  np.testing.assert_allclose(out[0, 3], 0.0)  # far outside


def _naive_ms_deform_attn(value, shapes, locations, weights):
  """Eq. 3 one query, head, level and point at a time."""
  b, _, m, d = value.shape
  q, k = locations.shape[1], locations.shape[4]
  starts = np.cumsum([0] + [h * w for h, w in shapes])
  out = np.zeros((b, q, m, d))
  for bi in range(b):
    for qi in range(q):
      for mi in range(m):
        for li, (h, w) in enumerate(shapes):
          level = value[bi, starts[li]:starts[li + 1], mi].reshape(h, w, d)
          for ki in range(k):
            x, y = locations[bi, qi, mi, li, ki]
            out[bi, qi, mi] += weights[bi, qi, mi, li, ki] * _scipy_sample(level, x, y)
  return out.reshape(b, q, m * d)


def test_ms_deform_attn_matches_a_naive_reference_over_levels_heads_and_points():
  rng = np.random.default_rng(1)
  shapes = ((6, 5), (3, 3), (1, 2))
  value = rng.normal(size=(2, sum(h * w for h, w in shapes), 2, 3)).astype(np.float32)
  locations = rng.uniform(-0.1, 1.1, (2, 4, 2, 3, 2, 2)).astype(np.float32)
  weights = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 4, 2, 6)), jnp.float32), -1)
  weights = np.asarray(weights).reshape(2, 4, 2, 3, 2)
  out = jax.jit(dd.ms_deform_attn, static_argnums=1)(value, shapes, locations, weights)
  np.testing.assert_allclose(out, _naive_ms_deform_attn(value, shapes, locations, weights),
                             atol=1e-5)
  # The sampling locations receive gradients (the offsets are learned through them).
  grad = jax.grad(lambda loc: dd.ms_deform_attn(value, shapes, loc, weights).sum())(locations)
  assert np.abs(np.asarray(grad)).sum() > 0


def test_zero_offsets_on_one_level_reduce_to_bilinear_sampling_at_the_reference_point():
  rng = np.random.default_rng(2)
  module = dd.MSDeformAttn(d_model=8, num_heads=2, num_levels=1, num_points=3)
  shapes = ((4, 6),)
  inputs = jnp.asarray(rng.normal(size=(2, 24, 8)), jnp.float32)
  query = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
  reference = jnp.asarray(rng.uniform(0, 1, (2, 5, 1, 2)), jnp.float32)
  params = module.init(jax.random.key(0), query, reference, inputs, shapes)['params']
  params['sampling_offsets'] = jax.tree.map(jnp.zeros_like, params['sampling_offsets'])
  params['attention_weights']['kernel'] = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
  out = module.apply({'params': params}, query, reference, inputs, shapes)
  value = inputs @ params['value_proj']['kernel'] + params['value_proj']['bias']
  sampled = dd.bilinear_sample(value.reshape(2, 4, 6, 8), reference[:, :, 0])  # all heads at once
  expected = sampled @ params['output_proj']['kernel'] + params['output_proj']['bias']
  np.testing.assert_allclose(out, expected, atol=1e-5)  # whatever the attention weights


def test_initial_offsets_point_around_the_circle_at_growing_distances():
  bias = np.asarray(dd._offset_bias_init(4, 2, 3)(None, (4 * 2 * 3 * 2,))).reshape(4, 2, 3, 2)
  np.testing.assert_allclose(bias[0, 0], [[1, 0], [2, 0], [3, 0]], atol=1e-6)  # head 0: +x
  np.testing.assert_allclose(bias[1, 1], [[0, 1], [0, 2], [0, 3]], atol=1e-6)  # head 1: +y
  np.testing.assert_allclose(bias[2], bias[2, :1].repeat(2, 0), atol=1e-6)  # same every level


def test_model_shapes_and_initial_boxes_centred_on_the_reference_points():
  config = dd.DeformableDETRConfig(
      num_classes=3, num_queries=5, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
      num_decoder_layers=2, dropout_rate=0.0, num_feature_levels=3, num_points=2,
      stage_sizes=(1, 1, 1), block='basic', backbone_levels=2, group_norm_groups=4,
      frozen_batch_norm=False)
  model = dd.DeformableDETR(config)
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  out, variables = jax.jit(lambda k, x: model.init_with_output(
      k, x, capture_intermediates=lambda mdl, _: mdl.name == 'reference_points'))(
          jax.random.key(1), images)
  chex.assert_shape(out['logits'], (2, 2, 5, 3))
  chex.assert_shape(out['boxes'], (2, 2, 5, 4))
  reference = jax.nn.sigmoid(variables['intermediates']['reference_points']['__call__'][0])
  np.testing.assert_allclose(out['boxes'][..., :2], jnp.broadcast_to(reference, (2, 2, 5, 2)),
                             atol=1e-5)
  np.testing.assert_allclose(out['boxes'][..., 2:], jax.nn.sigmoid(-2.0), atol=1e-6)
  prior = variables['params']['class_embed']['bias']  # the focal-loss prior probability 0.01
  np.testing.assert_allclose(jax.nn.sigmoid(prior), 0.01, rtol=1e-5)
