"""Detection pieces: box encodings, Hungarian matching, SPP, RoIAlign, SSD's boxes and loss, DETR."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxpapers.detection import boxes, detr, matching, roi_align, spp, ssd


def _random_boxes(rng, n, size=1.0):
  lo = rng.uniform(0, 0.7 * size, (n, 2))
  return np.concatenate([lo, lo + rng.uniform(0.05 * size, 0.3 * size, (n, 2))], -1).astype(
      np.float32)


def test_box_encoding_round_trips_and_matches_the_formula():
  rng = np.random.default_rng(0)
  b, a = _random_boxes(rng, 50), _random_boxes(rng, 50)
  t = boxes.encode(b, a)
  np.testing.assert_allclose(boxes.decode(t, a), b, atol=1e-5)
  # t_x = (x - x_a) / w_a / 0.1 and t_w = log(w / w_a) / 0.2, for the first pair by hand.
  cx, w = (b[0, 0] + b[0, 2]) / 2, b[0, 2] - b[0, 0]
  cxa, wa = (a[0, 0] + a[0, 2]) / 2, a[0, 2] - a[0, 0]
  np.testing.assert_allclose(t[0, [0, 2]], [(cx - cxa) / wa / 0.1, np.log(w / wa) / 0.2],
                             rtol=1e-5)
  np.testing.assert_allclose(boxes.xyxy_to_cxcywh(boxes.cxcywh_to_xyxy(b)), b, atol=1e-6)


def test_iou_and_giou_on_known_pairs():
  a = jnp.array([[0., 0., 2., 2.]])
  b = jnp.array([[1., 1., 3., 3.], [0., 0., 2., 2.], [3., 0., 4., 1.]])
  np.testing.assert_allclose(boxes.iou(a, b), [[1 / 7, 1.0, 0.0]], rtol=1e-6)
  # GIoU: enclosing boxes 9, 4 and 8; the disjoint pair is penalised below 0.
  np.testing.assert_allclose(boxes.generalized_iou(a, b),
                             [[1 / 7 - 2 / 9, 1.0, 0 - (8 - 5) / 8]], rtol=1e-6)


def test_hungarian_matching_equals_scipy_and_brute_force_under_jit_and_vmap():
  rng = np.random.default_rng(1)
  cost = rng.normal(size=(3, 5, 4)).astype(np.float32)
  valid = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]], bool)
  for_target, matched = jax.jit(matching.hungarian_match)(cost, valid)
  for_target_v, _ = jax.vmap(matching.hungarian_match)(cost, valid)
  np.testing.assert_array_equal(for_target, for_target_v)
  for i in range(3):
    targets = np.nonzero(valid[i])[0]
    rows, cols = optimize.linear_sum_assignment(cost[i][:, targets])
    np.testing.assert_array_equal(for_target[i, targets[cols]], rows)
    np.testing.assert_array_equal(for_target[i, ~valid[i]], -1)
    best = min(sum(cost[i, p, t] for p, t in zip(perm, targets))
               for perm in itertools.permutations(range(5), len(targets)))
    np.testing.assert_allclose(cost[i, for_target[i, targets], targets].sum(), best, rtol=1e-5)
    assert sorted(matched[i][matched[i] >= 0]) == list(targets)


@pytest.mark.parametrize('size', [(7, 7), (13, 13), (10, 17), (6, 6), (1, 3)])
def test_spp_output_length_is_independent_of_the_input_size(size):
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, *size, 5)), jnp.float32)
  out = spp.spatial_pyramid_pool(x)
  chex.assert_shape(out, (2, 5 * (36 + 9 + 4 + 1)))
  np.testing.assert_allclose(out[:, -5:], x.max((1, 2)))  # the 1x1 level is global max pooling
  # Bins cover the map: the max over a level's bins is the global max.
  np.testing.assert_allclose(spp.adaptive_max_pool(x, 6).max((1, 2)), x.max((1, 2)))


def test_spp_paper_bins_where_its_rule_gives_n_bins():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 13, 13, 2)), jnp.float32)
  # a = 13, n = 3: the paper's window ceil(13/3) = 5 and stride floor(13/3) = 4.
  paper = jnp.stack([jnp.stack([x[0, 4 * i:4 * i + 5, 4 * j:4 * j + 5].max((0, 1))
                                for j in range(3)]) for i in range(3)])
  np.testing.assert_allclose(spp.adaptive_max_pool(x, 3)[0], paper)
  model = spp.SPPClassifier(num_classes=3)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  for size in (24, 32, 45):  # one set of weights, any input size
    chex.assert_shape(model.apply(params, jnp.zeros((1, size, size + 3, 3))), (1, 3))


def _roi_align_reference(features, box, b, output_size, scale, ratio, aligned):
  """torchvision's roi_align_forward_kernel, transcribed loop by loop (CPU kernel)."""
  _, h, w, c = features.shape
  offset = 0.5 if aligned else 0.0
  x0, y0, x1, y1 = [v * scale - offset for v in box]
  rw, rh = x1 - x0, y1 - y0
  if not aligned:
    rw, rh = max(rw, 1.0), max(rh, 1.0)
  ph, pw = output_size
  out = np.zeros((ph, pw, c))
  for i, j in np.ndindex(ph, pw):
    total = np.zeros(c)
    for iy, ix in np.ndindex(ratio, ratio):
      y = y0 + i * rh / ph + (iy + 0.5) * rh / ph / ratio
      x = x0 + j * rw / pw + (ix + 0.5) * rw / pw / ratio
      if y < -1.0 or y > h or x < -1.0 or x > w:
        continue
      y, x = max(y, 0.0), max(x, 0.0)
      yl, xl = int(y), int(x)
      if yl >= h - 1:
        yh = yl = h - 1
        y = float(yl)
      else:
        yh = yl + 1
      if xl >= w - 1:
        xh = xl = w - 1
        x = float(xl)
      else:
        xh = xl + 1
      ly, lx = y - yl, x - xl
      f = features[b]
      total += ((1 - ly) * (1 - lx) * f[yl, xl] + (1 - ly) * lx * f[yl, xh]
                + ly * (1 - lx) * f[yh, xl] + ly * lx * f[yh, xh])
    out[i, j] = total / ratio**2
  return out


@pytest.mark.parametrize('aligned', [False, True])
def test_roi_align_matches_torchvisions_algorithm(aligned):
  rng = np.random.default_rng(4)
  features = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  rois = np.array([[3.0, 2.0, 17.0, 13.0], [0.0, 0.0, 1.0, 1.0], [-4.0, 5.0, 30.0, 25.0],
                   [10.3, 7.7, 12.1, 9.4]], np.float32)
  index = np.array([0, 1, 1, 0])
  out = jax.jit(roi_align.roi_align, static_argnums=(3, 4, 5, 6))(
      features, rois, index, (3, 4), 0.5, 2, aligned)
  for k in range(4):
    np.testing.assert_allclose(
        out[k], _roi_align_reference(features, rois[k], index[k], (3, 4), 0.5, 2, aligned),
        atol=1e-5)
  # No quantisation: moving a box by a fraction of a cell changes its features.
  moved = roi_align.roi_align(features, rois + 0.3, index, (3, 4), 0.5, 2, aligned)
  assert not np.allclose(moved[0], out[0])


def test_ssd300_has_8732_default_boxes():
  anchors = ssd.default_boxes(ssd.SSD300_MAPS, ssd.SSD300_SCALES, ssd.SSD300_RATIOS)
  assert anchors.shape == (8732, 4)  # Table 7
  assert (anchors >= 0).all() and (anchors <= 1).all()
  # The first location of conv4_3: scale 0.07 (COCO, sec. 3.4), then sqrt(0.07 * 0.15), then
  # ratio 2 and 1/2.
  unclipped = ssd.default_boxes(ssd.SSD300_MAPS, ssd.SSD300_SCALES, ssd.SSD300_RATIOS, clip='none')
  w = unclipped[:4, 2] - unclipped[:4, 0]
  h = unclipped[:4, 3] - unclipped[:4, 1]
  np.testing.assert_allclose(w, [0.07, np.sqrt(0.07 * 0.15), 0.07 * np.sqrt(2), 0.07 / np.sqrt(2)],
                             rtol=1e-5)
  np.testing.assert_allclose(w * h, [0.0049, 0.0105, 0.0049, 0.0049], rtol=1e-5)
  np.testing.assert_allclose(ssd.paper_scales(6)[:6], [0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
  with pytest.raises(ValueError, match='clip'):
    ssd.default_boxes(ssd.SSD300_MAPS, ssd.SSD300_SCALES, ssd.SSD300_RATIOS, clip=True)


def test_ssd300_preset_tiles_by_steps_and_clamps_sizes():
  from jaxpapers import zoo
  boxes = zoo.build('ssd300_vgg16').default_boxes()
  centres, sizes = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
  # Steps of 8 pixels on conv4_3 (the 38th centre at 300 pixels), the 1x1 map's centre at 150.
  np.testing.assert_allclose(centres[[0, 4 * 37, -1]] * 300, [[4, 4], [300, 4], [150, 150]],
                             rtol=1e-5)
  # Widths and heights clamped to 1 (the last map's 0.87 sqrt(2)), corners left out of the image.
  assert abs(sizes.max() - 1) < 1e-6 and boxes.min() < 0 and boxes.max() > 1


def test_ssd_matching_and_hard_negative_mining():
  anchors = jnp.asarray(ssd.default_boxes((4, 2), (0.2, 0.5, 0.8), ((2,), (2,))))
  gt = jnp.array([[0.0, 0.0, 0.25, 0.25], [0.3, 0.3, 0.9, 0.9], [0, 0, 0, 0]])
  labels = jnp.array([2, 0, -1])
  targets, matched = ssd.match(anchors, gt, labels)
  overlaps = np.asarray(boxes.iou(anchors, gt[:2]))
  for j, label in enumerate([2, 0]):
    best = overlaps[:, j].argmax()
    assert targets[best] == label + 1 and np.allclose(matched[best], gt[j])
  positive = np.asarray(targets) > 0
  np.testing.assert_array_equal(positive, (overlaps.max(1) > 0.5) | np.isin(
      np.arange(len(anchors)), overlaps.argmax(0)))
  loss = jnp.asarray(np.random.default_rng(5).random(len(anchors)), jnp.float32)
  negatives = np.asarray(ssd.hard_negatives(loss, jnp.asarray(positive)))
  k = 3 * positive.sum()
  assert negatives.sum() == min(k, (~positive).sum()) and not (negatives & positive).any()
  assert np.asarray(loss)[negatives].min() >= np.asarray(loss)[~positive & ~negatives].max()


def test_multibox_loss_vanishes_for_perfect_predictions():
  anchors = jnp.asarray(ssd.default_boxes((4, 2), (0.2, 0.5, 0.8), ((2,), (2,))))
  gt = jnp.array([[0.0, 0.0, 0.25, 0.25], [0.3, 0.3, 0.9, 0.9]])
  labels = jnp.array([2, 0])
  targets, matched = ssd.match(anchors, gt, labels)
  perfect_logits = 30.0 * jax.nn.one_hot(targets, 4)
  out = ssd.multibox_loss(perfect_logits, boxes.encode(matched, anchors), anchors, gt, labels)
  assert out['positives'] > 2 and out['loss'] < 1e-4
  noisy = ssd.multibox_loss(jnp.zeros((len(anchors), 4)), jnp.zeros((len(anchors), 4)), anchors,
                            gt, labels)
  assert noisy['loss'] > 1.0
  empty = ssd.multibox_loss(perfect_logits, jnp.zeros_like(anchors), anchors, gt,
                            jnp.array([-1, -1]))
  assert empty['loss'] == 0.0  # N = 0


def test_detr_loss_is_invariant_to_the_order_of_predictions():
  rng = np.random.default_rng(6)
  logits = jnp.asarray(rng.normal(size=(2, 6, 4)), jnp.float32)
  pred = jnp.asarray(rng.uniform(0.2, 0.4, (2, 6, 4)), jnp.float32)
  gt_boxes = jnp.asarray(rng.uniform(0.2, 0.4, (2, 3, 4)), jnp.float32)
  gt_labels = jnp.array([[0, 2, -1], [1, -1, -1]])
  loss = jax.jit(detr.set_prediction_loss)
  base = loss(logits, pred, gt_labels, gt_boxes)
  perm = rng.permutation(6)
  permuted = loss(logits[:, perm], pred[:, perm], gt_labels, gt_boxes)
  np.testing.assert_allclose(permuted['loss'], base['loss'], rtol=1e-5)
  # A perfect set: the ground truth in some slots, confident "no object" elsewhere.
  perfect_boxes = pred.at[:, 4:].set(0.3).at[0, 4:6].set(gt_boxes[0, :2]).at[1, 4].set(gt_boxes[1, 0])
  cls = jnp.full((2, 6), 3).at[0, 4].set(0).at[0, 5].set(2).at[1, 4].set(1)
  out = loss(30.0 * jax.nn.one_hot(cls, 4), perfect_boxes, gt_labels, gt_boxes)
  np.testing.assert_array_equal(out['matched'][0, 4:], [0, 1])
  assert out['matched'][1, 4] == 0 and (out['matched'][1, :4] == -1).all()
  assert out['loss'] < 1e-5 and base['loss'] > 1.0
  # Gradients flow to the boxes and logits (not through the matching).
  grads = jax.grad(lambda b: detr.set_prediction_loss(logits, b, gt_labels, gt_boxes)['loss'])(pred)
  assert np.abs(np.asarray(grads)).sum() > 0


def test_ssd300_network_predicts_for_every_default_box():
  from jaxpapers import zoo
  preset = zoo.get('ssd300_vgg16')
  logits, offsets = jax.eval_shape(
      lambda x: preset.build().init_with_output(jax.random.key(0), x)[0], *preset.inputs())
  anchors = ssd.default_boxes(ssd.SSD300_MAPS, ssd.SSD300_SCALES, ssd.SSD300_RATIOS)
  assert logits.shape == (1, len(anchors), 91) and offsets.shape == (1, len(anchors), 4)
  # torchvision's count: VGG-16 convolutions + L2Norm scale + fc6/fc7 + extras + heads.
  c = lambda i, o, k=3: i * o * k * k + o  # noqa: E731
  extra = (c(512, 1024) + c(1024, 1024, 1) + c(1024, 256, 1) + c(256, 512) + c(512, 128, 1)
           + c(128, 256) + 2 * (c(256, 128, 1) + c(128, 256)))
  heads = sum(c(i, n * 91) + c(i, n * 4) for i, n in zip((512, 1024, 512, 256, 256, 256),
                                                           (4, 6, 6, 6, 4, 4)))
  assert zoo.count_params('ssd300_vgg16') == 14_714_688 + 512 + extra + heads == 35_641_826


def test_ssd_detections_suppress_overlaps_of_one_class_only():
  anchors = jnp.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]])
  # Class probabilities (background first). Boxes 0 and 1 overlap (IoU 0.9): for class 0 box 0
  # (0.8) suppresses box 1 (0.5); for class 1 box 1 (0.35) suppresses box 0 (0.1). Box 2 overlaps
  # nothing and stays for both classes (0.05 is above the 0.01 threshold).
  logits = jnp.log(jnp.array([[[0.1, 0.8, 0.1], [0.15, 0.5, 0.35], [0.5, 0.05, 0.45]]]))
  out = np.asarray(ssd.detections(logits, jnp.zeros((1, 3, 4)), anchors, (100, 200), top_k=6))
  kept = {(int(row[5]), tuple(np.round(row[:4]).astype(int))): float(row[4]) for row in out[0]
          if row[4] > 0}
  b0, b1, b2 = (20, 10, 100, 50), (24, 10, 104, 50), (120, 60, 180, 90)  # pixels (x0, y0, x1, y1)
  np.testing.assert_equal(sorted(kept), sorted([(0, b0), (0, b2), (1, b1), (1, b2)]))
  np.testing.assert_allclose([kept[(0, b0)], kept[(1, b1)], kept[(0, b2)]], [0.8, 0.35, 0.05],
                             rtol=1e-5)
