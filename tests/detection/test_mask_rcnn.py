"""Mask R-CNN's pieces: anchors, FPN levels, target sampling, proposals, mask targets, losses."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection import mask_rcnn, matching, roi_align


def test_anchor_count_and_layout_per_level():
  sizes, ratios = (8, 16, 32, 48), (0.5, 1.0, 2.0)
  grids = [(16, 16), (8, 8), (4, 4), (2, 2)]
  anchors = mask_rcnn.anchors((64, 64), grids, sizes, ratios)
  assert anchors.shape == (3 * (256 + 64 + 16 + 4), 4)
  start = 0
  for (h, w), size in zip(grids, sizes):
    level = anchors[start:start + 3 * h * w].reshape(h, w, 3, 4)
    base = level[0, 0]
    width, height = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    np.testing.assert_allclose(height / width, ratios, rtol=0.15)  # corners rounded to pixels
    np.testing.assert_allclose(np.sqrt(width * height), size, rtol=0.1)
    np.testing.assert_allclose((base[:, :2] + base[:, 2:]) / 2, 0.0, atol=0.5)  # centred on (0, 0)
    stride = 64 // h
    i, j = h - 1, w // 2  # any location: the base anchors shifted by (j, i) * stride
    np.testing.assert_array_equal(level[i, j], base + stride * np.array([j, i, j, i]))
    start += 3 * h * w


def test_fpn_level_assignment_follows_eq_1():
  sides = np.array([28.0, 56, 111.9, 112, 223.9, 224, 448, 1000])
  boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], 1)
  # k = floor(4 + log2(side / 224)), clamped to P2..P5.
  np.testing.assert_array_equal(mask_rcnn.fpn_levels(boxes), [2, 2, 2, 3, 3, 4, 5, 5])
  rect = np.array([[0.0, 0.0, 448.0, 112.0]])  # sqrt(wh) = 224
  np.testing.assert_array_equal(mask_rcnn.fpn_levels(rect), [4])


def test_multiscale_roi_align_reads_each_box_from_its_own_level():
  rng = np.random.default_rng(0)
  features = [jnp.asarray(rng.normal(size=(2, 32 // 2**i, 40 // 2**i, 3)), jnp.float32)
              for i in range(3)]  # P2..P4 of a 128x160 image
  lo = rng.uniform(-10, 120, (9, 2))
  boxes = np.concatenate([lo, lo + np.repeat([[6.0], [20], [60]], 3, 0)], 1).astype(np.float32)
  index = jnp.asarray(rng.integers(0, 2, 9))
  out = mask_rcnn.multiscale_roi_align(features, boxes, index, 5, canonical_scale=32.0)
  levels = np.asarray(mask_rcnn.fpn_levels(boxes, 32.0, 4, 2, 4))
  np.testing.assert_array_equal(levels, [2, 2, 2, 3, 3, 3, 4, 4, 4])
  for k, level in enumerate(levels):
    expected = roi_align.roi_align(features[level - 2], boxes[k:k + 1], index[k:k + 1], (5, 5),
                                   2.0**-level)
    np.testing.assert_allclose(out[k:k + 1], expected, atol=1e-6)


def test_sampling_respects_batch_size_and_positive_fraction():
  labels = jnp.concatenate([jnp.ones(1000, jnp.int32), jnp.zeros(5000, jnp.int32),
                            -jnp.ones(100, jnp.int32)])
  positive, negative = mask_rcnn.sample(labels, jax.random.key(0), 256, 0.5)
  assert int(positive.sum()) == 128 and int(negative.sum()) == 128
  assert not bool(jnp.any(positive & (labels != 1))) and not bool(jnp.any(negative & (labels != 0)))
  other, _ = mask_rcnn.sample(labels, jax.random.key(1), 256, 0.5)
  assert bool(jnp.any(other != positive))  # a random subset
  few = labels.at[10:1000].set(-1)  # 10 positives: the negatives fill the batch
  positive, negative = mask_rcnn.sample(few, jax.random.key(0), 256, 0.5)
  assert int(positive.sum()) == 10 and int(negative.sum()) == 246


def test_rpn_matching_thresholds_and_low_quality_matches():
  gt = jnp.array([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 0.0, 0.0]])
  anchors = jnp.array([[0.0, 0.0, 10.0, 11.0],    # IoU 0.91 with gt 0: positive
                       [0.0, 0.0, 10.0, 20.0],    # 0.5: ignored
                       [30.0, 30.0, 40.0, 40.0],  # 0: negative
                       [48.0, 48.0, 64.0, 64.0]])  # 0.39 with gt 1, its best: positive anyway
  valid = jnp.array([True, True, False])
  matches = matching.threshold_match(box_lib.iou(gt, anchors), valid, 0.3, 0.7, True)
  np.testing.assert_array_equal(matches, [0, -2, -1, 1])
  without = matching.threshold_match(box_lib.iou(gt, anchors), valid, 0.3, 0.7, False)
  np.testing.assert_array_equal(without, [0, -2, -1, -2])
  # A ground truth that overlaps no anchor (IoU 0 everywhere): torchvision's Matcher gives every
  # anchor its best match (here gt 0, IoU 0 for anchor 2); RetinaNet's `require_overlap` does not.
  far = gt.at[1].set(jnp.array([90.0, 90.0, 99.0, 99.0]))
  np.testing.assert_array_equal(
      matching.threshold_match(box_lib.iou(far, anchors), valid, 0.3, 0.7, True), [0, 0, 0, 0])
  np.testing.assert_array_equal(matching.threshold_match(
      box_lib.iou(far, anchors), valid, 0.3, 0.7, True, require_overlap=True), [0, -2, -1, -1])


def test_proposals_have_a_static_shape_and_are_suppressed():
  anchors = mask_rcnn.anchors((64, 64), [(16, 16)], (12,), (0.5, 1.0, 2.0))
  rng = np.random.default_rng(0)
  objectness = jnp.asarray(rng.normal(size=len(anchors)), jnp.float32)
  deltas = jnp.asarray(rng.normal(scale=0.3, size=(len(anchors), 4)), jnp.float32)
  boxes, valid = jax.jit(functools.partial(
      mask_rcnn.proposals, anchor_boxes=jnp.asarray(anchors), level_sizes=[len(anchors)],
      image_size=(64, 64), pre_nms_top_n=500, post_nms_top_n=100, nms_threshold=0.5))(
          objectness, deltas)
  assert boxes.shape == (100, 4) and valid.shape == (100,)
  kept = np.asarray(boxes)[np.asarray(valid)]
  assert 10 < len(kept)
  assert kept.min() >= 0 and kept.max() <= 64  # clipped to the image
  overlaps = np.asarray(box_lib.iou(kept, kept)) - np.eye(len(kept))
  assert overlaps.max() <= 0.5


def test_nms_is_greedy_within_groups():
  boxes = jnp.array([[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 9, 10], [20, 20, 30, 30]])
  scores = jnp.array([0.5, 0.9, 0.8, 0.1])
  valid = jnp.array([True, True, True, True])
  # 1 (0.9) suppresses 0 (IoU 0.81) and not 2 (IoU 0.72 < 0.75); 3 is alone.
  np.testing.assert_array_equal(box_lib.nms(boxes, scores, valid, 0.75), [False, True, True, True])
  np.testing.assert_array_equal(box_lib.nms(boxes, scores, valid, 0.75, jnp.array([0, 1, 1, 1])),
                                [True, True, True, True])
  # Without 1, 2 (0.8) comes first and suppresses 0 (IoU 0.9).
  np.testing.assert_array_equal(box_lib.nms(boxes, scores, valid.at[1].set(False), 0.75),
                                [False, False, True, True])


def test_mask_targets_of_an_instance_box_reproduce_the_mask():
  rng = np.random.default_rng(0)
  cells = rng.random((28, 28)) > 0.5
  masks = np.zeros((1, 2, 64, 64), bool)
  masks[0, 1, 3:59, 5:61] = np.kron(cells, np.ones((2, 2), bool))  # 56x56: two pixels a cell
  rois = jnp.array([[[5.0, 3.0, 61.0, 59.0]]])
  targets = mask_rcnn.mask_targets(jnp.asarray(masks), rois, jnp.array([[1]]))
  np.testing.assert_allclose(targets[0, 0], cells.astype(np.float32), atol=1e-6)
  other = mask_rcnn.mask_targets(jnp.asarray(masks), rois, jnp.array([[0]]))
  np.testing.assert_array_equal(other, 0.0)  # the matched instance's mask, not another


def test_pasted_masks_cover_their_box():
  pasted = np.asarray(mask_rcnn.paste_masks(jnp.ones((1, 28, 28)), jnp.array([[10.0, 20, 30, 40]]),
                                            (64, 64)))[0]
  assert pasted.shape == (64, 64)
  np.testing.assert_allclose(pasted[21:39, 11:29], 1.0, atol=1e-6)
  assert pasted[:19].max() == 0 and pasted[:, 31:].max() == 0


@pytest.fixture(scope='module')
def tiny():
  model = zoo.build('maskrcnn_scenes', fpn_features=8, rpn_pre_nms_top_n=(32, 16),
                    rpn_post_nms_top_n=(16, 8), roi_batch_size=16, representation_size=16,
                    detection_candidates=16, detections_per_image=5, mask_layers=(8,))
  images = jnp.asarray(np.random.default_rng(0).random((2, 64, 64, 3)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), images[:1])
  return model, variables, images


def test_losses_without_objects_have_no_box_or_mask_terms(tiny):
  model, variables, images = tiny
  boxes = jnp.array([[[10.0, 12, 30, 40], [0, 0, 0, 0]]] * 2)
  masks = jnp.zeros((2, 2, 64, 64), bool).at[:, 0, 12:40, 10:30].set(True)

  @jax.jit
  def losses(labels):
    def total(params):
      terms, _ = model.apply({**variables, 'params': params}, images, boxes, labels, masks,
                             jax.random.key(1), method='losses', mutable=['batch_stats'])
      return terms['loss'], terms
    return jax.grad(total, has_aux=True)(variables['params'])

  grads, terms = losses(jnp.array([[-1, -1], [-1, -1]]))  # no objects
  for key in ('rpn_box', 'box', 'mask'):
    assert float(terms[key]) == 0.0, key
  assert float(terms['rpn_objectness']) > 0 and float(terms['classifier']) > 0
  grads, terms = losses(jnp.array([[2, -1], [0, -1]]))  # one object each
  assert all(np.isfinite(float(v)) for v in terms.values())
  assert float(terms['rpn_box']) > 0 and float(terms['mask']) > 0 and float(terms['box']) > 0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_inference_outputs_have_static_shapes(tiny):
  model, variables, images = tiny
  out = jax.jit(model.apply)(variables, images)
  assert out['boxes'].shape == (2, 5, 4) and out['scores'].shape == (2, 5)
  assert out['labels'].shape == (2, 5) and out['masks'].shape == (2, 5, 28, 28)
  assert bool(jnp.all((out['labels'] >= 1) & (out['labels'] < 6)))


def test_faster_rcnn_is_mask_rcnn_without_the_mask_branch(tiny):
  model, variables, images = tiny
  faster = model.clone(config=dataclasses.replace(model.config, masks=False))
  params = jax.eval_shape(faster.init, jax.random.key(0), images[:1])['params']
  assert set(params) == {'backbone', 'rpn_head', 'box_head', 'box_predictor'}
  assert set(variables['params']) == set(params) | {'mask_head', 'mask_predictor'}
  out = jax.eval_shape(faster.apply, variables, images)  # extra mask variables are unused
  assert set(out) == {'boxes', 'scores', 'labels'}
  terms, _ = jax.eval_shape(functools.partial(faster.apply, method='losses', mutable=['batch_stats']),
                            variables, images, jnp.zeros((2, 1, 4)), jnp.zeros((2, 1), jnp.int32),
                            None, jax.random.key(0))
  assert set(terms) == {'loss', 'rpn_objectness', 'rpn_box', 'classifier', 'box'}
