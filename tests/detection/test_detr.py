"""DETR (Carion et al. 2020): output shapes, the sine encodings, the auxiliary Hungarian loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.detection import detr

_TINY = detr.DETRConfig(num_classes=3, num_queries=6, d_model=16, num_heads=2, d_ff=32,
                        num_encoder_layers=1, num_decoder_layers=2, dropout_rate=0.0,
                        stage_sizes=(1, 1), block='basic', frozen_batch_norm=False)


def test_outputs_of_every_decoder_layer_and_boxes_in_the_unit_square():
  model = detr.DETR(_TINY)
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  out, variables = jax.jit(model.init_with_output)(jax.random.key(1), images)
  chex.assert_shape(out['logits'], (2, 2, 6, 4))  # layers, batch, queries, classes + no object
  chex.assert_shape(out['boxes'], (2, 2, 6, 4))
  assert (out['boxes'] > 0).all() and (out['boxes'] < 1).all()
  # Queries are decoded in parallel and differ only through their learned embeddings.
  assert not np.allclose(out['boxes'][-1, 0, 0], out['boxes'][-1, 0, 1])
  # Train mode with trainable batch norms updates the backbone's statistics.
  _, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, images)
  assert not np.allclose(jax.tree.leaves(state)[0], jax.tree.leaves(variables['batch_stats'])[0])


def test_frozen_batch_norm_keeps_the_statistics_in_training():
  model = detr.DETR(detr.DETRConfig(**{**_TINY.__dict__, 'frozen_batch_norm': True}))
  images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
  variables = jax.jit(model.init)(jax.random.key(1), images)
  _, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, images)
  chex.assert_trees_all_close(state['batch_stats'], variables['batch_stats'])


def test_sine_encoding_is_detrs_closed_form():
  pos = np.asarray(detr.sine_position_encoding(3, 5, 8))
  half, scale = 4, 2 * np.pi
  dim_t = 10000.0 ** (2 * (np.arange(half) // 2) / half)
  y, x = 1, 3  # row 2 of 3, column 4 of 5 (1-based cumulative positions / size)
  ay, ax = (y + 1) / 3 * scale / dim_t, (x + 1) / 5 * scale / dim_t
  expected_y = np.array([np.sin(ay[0]), np.cos(ay[1]), np.sin(ay[2]), np.cos(ay[3])])
  expected_x = np.array([np.sin(ax[0]), np.cos(ax[1]), np.sin(ax[2]), np.cos(ax[3])])
  np.testing.assert_allclose(pos[y, x], np.concatenate([expected_y, expected_x]), atol=1e-5)


def _targets(rng):
  gt_boxes = jnp.asarray(rng.uniform(0.2, 0.4, (2, 3, 4)), jnp.float32)
  gt_labels = jnp.array([[0, 2, 1], [1, -1, -1]])
  return gt_labels, gt_boxes


def test_hungarian_loss_is_invariant_to_permuting_the_targets():
  rng = np.random.default_rng(0)
  outputs = {'logits': jnp.asarray(rng.normal(size=(3, 2, 6, 4)), jnp.float32),
             'boxes': jnp.asarray(rng.uniform(0.2, 0.4, (3, 2, 6, 4)), jnp.float32)}
  gt_labels, gt_boxes = _targets(rng)
  loss = jax.jit(detr.detr_loss)
  base = loss(outputs, gt_labels, gt_boxes)
  perm = np.array([2, 0, 1])
  permuted = loss(outputs, gt_labels[:, perm], gt_boxes[:, perm])
  for key in ('loss', 'loss_ce', 'loss_l1', 'loss_giou'):
    np.testing.assert_allclose(permuted[key], base[key], rtol=1e-5)
  # A padding slot moved in front of the real objects changes nothing either.
  padded_first = loss(outputs, gt_labels[:, ::-1], gt_boxes[:, ::-1])
  np.testing.assert_allclose(padded_first['loss'], base['loss'], rtol=1e-5)
  # The auxiliary losses: the total is the sum of every layer's own Hungarian loss.
  per_layer = [detr.set_prediction_loss(outputs['logits'][i], outputs['boxes'][i], gt_labels,
                                        gt_boxes)['loss'] for i in range(3)]
  np.testing.assert_allclose(base['loss'], sum(per_layer), rtol=1e-5)
  np.testing.assert_allclose(base['loss_last_layer'], per_layer[-1], rtol=1e-5)


def test_focal_variant_is_invariant_and_vanishes_on_a_perfect_set():
  rng = np.random.default_rng(1)
  gt_labels, gt_boxes = _targets(rng)
  logits = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
  pred = jnp.asarray(rng.uniform(0.2, 0.4, (2, 6, 4)), jnp.float32)
  loss = jax.jit(lambda *a: detr.set_prediction_loss(*a, w_class=2.0, classification='focal'))
  base = loss(logits, pred, gt_labels, gt_boxes)
  perm = np.array([1, 2, 0])
  np.testing.assert_allclose(loss(logits, pred, gt_labels[:, perm], gt_boxes[:, perm])['loss'],
                             base['loss'], rtol=1e-5)
  perfect_boxes = pred.at[0, :3].set(gt_boxes[0]).at[1, 0].set(gt_boxes[1, 0])
  onehot = jnp.zeros((2, 6, 3)).at[0, jnp.arange(3), gt_labels[0]].set(1).at[1, 0, 1].set(1)
  perfect = loss(20.0 * (2 * onehot - 1), perfect_boxes, gt_labels, gt_boxes)
  assert perfect['loss'] < 1e-5 < base['loss']
  np.testing.assert_array_equal(perfect['matched'][0, :3], [0, 1, 2])


def test_detections_are_pixel_boxes_with_the_best_real_class():
  logits = jnp.array([[[0.0, 5.0, 1.0, 9.0], [3.0, 0.0, 0.0, 0.0]]])[None]  # [1, 1, 2, 4]
  boxes = jnp.array([[[0.5, 0.5, 0.5, 0.25], [0.25, 0.25, 0.5, 0.5]]])[None]
  out = np.asarray(detr.detections({'logits': logits, 'boxes': boxes}, (64, 32)))
  np.testing.assert_allclose(out[0, 0, :4], [8.0, 24.0, 24.0, 40.0])
  assert out[0, 0, 5] == 1 and out[0, 1, 5] == 0  # never "no object" (index 3)
  p = np.exp([0.0, 5.0, 1.0, 9.0]) / np.exp([0.0, 5.0, 1.0, 9.0]).sum()
  np.testing.assert_allclose(out[0, 0, 4], p[1], rtol=1e-5)


def test_detr_resnet50_count_is_the_hugging_face_count_plus_the_batch_norm_affine():
  # HF num_parameters() 41,524,768 = the DETR repo's trainable 41,302,368 + frozen conv1/layer1.
  assert zoo.count_params('detr_resnet50') == 41_524_768 + 53_120 == 41_302_368 + 222_400 + 53_120
  variables = zoo.abstract_variables('detr_resnet50')
  transformer = sum(int(np.prod(x.shape)) for k, v in variables['params'].items()
                    if k.startswith(('encoder', 'decoder')) for x in jax.tree.leaves(v))
  assert transformer == 17_363_456
