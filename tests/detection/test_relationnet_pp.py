"""RelationNet++'s BVR: key selection, the geometry term's translation invariance, a zeroed output
projection leaving RetinaNet unchanged, keypoint targets and loss."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.detection import relationnet_pp as rpp
from jaxpapers.detection import retinanet


def test_key_selection_picks_the_top_k_positions_over_classes():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 40, 3)), jnp.float32)
  index = rpp.select_keys(logits, 7)
  for b in range(2):
    expected = np.argsort(-np.asarray(logits[b]).max(-1))[:7]
    np.testing.assert_array_equal(index[b], expected)


def _attention_weights(module, params, queries, query_pos, keys, key_pos):
  _, state = module.apply(params, queries, query_pos, keys, key_pos, mutable=['intermediates'])
  return state['intermediates']['weights'][0]


def test_attention_depends_on_positions_only_through_relative_positions():
  rng = np.random.default_rng(1)
  queries = jnp.asarray(rng.normal(size=(2, 12, 16)), jnp.float32)
  keys = jnp.asarray(rng.normal(size=(2, 5, 16)), jnp.float32)
  query_pos = jnp.asarray(rng.uniform(0, 8, (12, 2)), jnp.float32)
  key_pos = jnp.asarray(rng.uniform(0, 8, (2, 5, 2)), jnp.float32)
  module = rpp.BridgeAttention(num_heads=4)
  params = module.init(jax.random.key(0), queries, query_pos, keys, key_pos)
  # A larger geometry projection than the init's N(0, 0.01), so the term matters.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x * 30 if 'geometry' in jax.tree_util.keystr(path) else x, params)
  weights = _attention_weights(module, params, queries, query_pos, keys, key_pos)
  shift = jnp.array([3.7, -2.1])
  shifted = _attention_weights(module, params, queries, query_pos + shift, keys, key_pos + shift)
  np.testing.assert_allclose(shifted, weights, atol=1e-5)
  moved = _attention_weights(module, params, queries, query_pos, keys, key_pos + shift)
  assert np.abs(np.asarray(moved - weights)).max() > 1e-2  # keys alone moved: weights change


def _tiny(bvr):
  fields = {**retinanet.SCENES, 'features': 16, 'num_convs': 1}
  return retinanet.RetinaNet(**fields, bvr=bvr)


def test_zeroed_output_projection_leaves_the_base_detector_unchanged():
  with_bvr = _tiny(rpp.BVR(num_classes=5, num_heads=4, num_keys=10))
  image = jnp.asarray(np.random.default_rng(2).uniform(size=(2, 64, 64, 3)), jnp.float32)
  variables = with_bvr.init(jax.random.key(0), image)
  base_variables = {**variables, 'params': {k: v for k, v in variables['params'].items()
                                            if k != 'bvr'}}
  base = _tiny(None).apply(base_variables, image)
  enhanced = with_bvr.apply(variables, image)
  assert np.abs(np.asarray(enhanced['logits'] - base['logits'])).max() > 1e-4
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.zeros_like(x) if "'out'" in jax.tree_util.keystr(path) else x,
      variables)
  out = with_bvr.apply(zeroed, image)
  np.testing.assert_allclose(out['logits'], base['logits'], atol=1e-6)
  np.testing.assert_allclose(out['offsets'], base['offsets'], atol=1e-6)
  assert out['keypoint_logits'].shape == (2, 16 * 16 + 8 * 8 + 4 * 4, 3, 5)


def test_keypoint_targets_peak_at_the_nearest_location_of_every_level():
  levels = [(16, 16, 4), (8, 8, 8), (4, 4, 16)]
  gt_boxes = jnp.array([[10.3, 5.2, 30.9, 21.7], [0., 0., 0., 0.]])
  labels = jnp.array([2, -1])
  point = gt_boxes[:1, :2]  # the top-left corner
  heat, peaks, offsets = rpp.keypoint_targets(point, gt_boxes, labels, levels, num_classes=4)
  points, strides = rpp.location_points(levels)
  assert peaks.sum() == 3 and np.all(heat[:, [0, 1, 3]] == 0)
  np.testing.assert_array_equal(np.flatnonzero(heat[:, 2] == 1), np.flatnonzero(peaks))
  start = 0
  for h, w, _ in levels:  # the peak is each level's nearest location
    level = slice(start, start + h * w)
    start += h * w
    nearest = np.argmin(((points[level] - np.asarray(point)) ** 2).sum(-1))
    assert peaks[level][nearest]
  recovered = points[peaks] + offsets[peaks] * strides[peaks][:, None]
  np.testing.assert_allclose(recovered, np.repeat(point, 3, 0), atol=1e-5)
  # A Gaussian around the peak: on P2 (stride 4) the right-hand neighbour of the peak has
  # exp(-4^2 / (2 sigma^2)), sigma = (2 r + 1) / 6 with CornerNet's radius r of a 20.6 x 16.5 box.
  sigma = (2 * rpp.gaussian_radius(21.7 - 5.2, 30.9 - 10.3) + 1) / 6
  peak = np.flatnonzero(peaks)[0]
  np.testing.assert_allclose(heat[peak + 1, 2], np.exp(-16 / (2 * sigma ** 2)), rtol=1e-5)


def test_gaussian_focal_loss_equals_cornernets_formula():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(20, 2)).astype(np.float32)
  target = rng.uniform(size=(20, 2)).astype(np.float32)
  target[[3, 11], [0, 1]] = 1.0
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = np.where(target == 1, -(1 - p) ** 2 * np.log(p),
                      -(1 - target) ** 4 * p ** 2 * np.log(1 - p)).sum()
  np.testing.assert_allclose(rpp.gaussian_focal_loss(logits, target), expected, rtol=1e-5)
