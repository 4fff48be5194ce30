"""RetinaNet: anchors, focal loss, matching thresholds, read-out, parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.detection import boxes, retinanet


def test_anchor_count_per_level_and_shapes():
  model = zoo.build('retinanet_resnet50_fpn')  # 800x800: P3..P7 of 100, 50, 25, 13, 7
  levels = model.levels()
  assert levels == [(100, 100, 8), (50, 50, 16), (25, 25, 32), (13, 13, 64), (7, 7, 128)]
  a = model.anchors()
  assert a.shape == (9 * sum(h * w for h, w, _ in levels), 4)
  # The first location of P3: 3 ratios x 3 scales of area (32 s)^2, height / width = r.
  first = a[:9]
  w, h = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
  np.testing.assert_allclose(np.sqrt(w * h), [32 * s for _ in range(3) for s in
                                              retinanet.ANCHOR_SCALES], rtol=1e-5)
  np.testing.assert_allclose(h / w, np.repeat(retinanet.ANCHOR_RATIOS, 3), rtol=1e-5)
  np.testing.assert_allclose((first[:, :2] + first[:, 2:]) / 2, 4.0)  # centred at stride / 2
  last = a[-9:]  # P7's last location, anchors of 512
  np.testing.assert_allclose(np.sqrt(np.prod(last[:, 2:] - last[:, :2], -1))[4], 512 * 2 ** (1 / 3),
                             rtol=1e-5)


def test_parameter_count_is_torchvisions_plus_the_frozen_bn_affine():
  # torchvision's docs: 34,014,999; its backbone BN weight/bias (FrozenBatchNorm2d buffers) are
  # 53,120 parameters of flax's BatchNorm.
  assert zoo.count_params('retinanet_resnet50_fpn') == 34_014_999 + 53_120


def test_focal_loss_equals_its_formula_and_is_cross_entropy_at_gamma_0():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 3)).astype(np.float32) * 3
  target = np.array([0, 2, retinanet.BACKGROUND, 1, retinanet.IGNORED, retinanet.BACKGROUND])
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  y = np.eye(3)[np.maximum(target, 0)] * (target >= 0)[:, None]
  p_t = np.where(y == 1, p, 1 - p)
  alpha_t = np.where(y == 1, 0.25, 0.75)
  expected = (-alpha_t * (1 - p_t) ** 2 * np.log(p_t))[target != retinanet.IGNORED].sum()
  np.testing.assert_allclose(retinanet.classification_loss(logits, target), expected, rtol=1e-5)
  ce = optax.sigmoid_binary_cross_entropy(logits, y)[target != retinanet.IGNORED].sum()
  np.testing.assert_allclose(retinanet.classification_loss(logits, target, alpha=0.5, gamma=0.0),
                             0.5 * ce, rtol=1e-5)


def test_matching_thresholds_and_low_quality_matches():
  gt = jnp.array([[0., 0., 10., 10.], [50., 50., 60., 60.], [0., 0., 0., 0.]])
  labels = jnp.array([3, 1, -1])
  anchors = jnp.array([
      [0., 0., 10., 12.],   # IoU 100/120 = 0.83 with gt 0: positive
      [0., 0., 10., 22.],   # IoU 100/220 = 0.45: ignored
      [0., 0., 10., 30.],   # IoU 1/3: background
      [30., 30., 40., 40.],  # no overlap: background
      [50., 50., 80., 80.],  # IoU 100/900 = 0.11 with gt 1, its best anchor: positive anyway
  ])
  target, matched = retinanet.match(anchors, gt, labels)
  np.testing.assert_array_equal(target, [3, retinanet.IGNORED, retinanet.BACKGROUND,
                                         retinanet.BACKGROUND, 1])
  np.testing.assert_allclose(matched[np.array([0, 4])], gt[:2])
  # Exactly at the thresholds: IoU 0.5 is positive, 0.4 is ignored, just under 0.4 background.
  at = jnp.array([[0., 0., 10., 20.], [0., 0., 10., 25.], [0., 0., 10., 25.1]])
  target, _ = retinanet.match(jnp.concatenate([anchors[:1], at]), gt, labels)
  np.testing.assert_array_equal(target[1:], [3, retinanet.IGNORED, retinanet.BACKGROUND])


def test_detections_decode_the_encoded_box_and_suppress_within_a_class():
  model = retinanet.RetinaNet(**retinanet.SCENES)
  a = model.anchors()
  gt = np.array([12., 20., 30., 34.], np.float32)
  best = np.argsort(-boxes.iou(jnp.asarray(a), jnp.asarray(gt[None]))[:, 0])[:2]
  logits = np.full((1, a.shape[0], 5), -10.0, np.float32)
  offsets = np.zeros((1, a.shape[0], 4), np.float32)
  logits[0, best, 2] = [3.0, 2.0]  # two overlapping anchors say class 2 for the same box
  offsets[0, best] = boxes.encode(jnp.asarray(gt), jnp.asarray(a[best]), retinanet.UNIT_VARIANCES)
  logits[0, best[1], 4] = 1.0  # and the second one class 4 as well
  out = model.detections({'logits': jnp.asarray(logits), 'offsets': jnp.asarray(offsets)})
  assert out.shape == (1, 100, 6)
  kept = out[0][out[0, :, 4] > 0]
  assert kept.shape[0] == 2  # one box per class
  np.testing.assert_allclose(kept[:, :4], np.stack([gt, gt]), atol=1e-3)
  np.testing.assert_allclose(kept[:, 4], jax.nn.sigmoid(jnp.array([3.0, 1.0])), rtol=1e-5)
  np.testing.assert_array_equal(kept[:, 5], [2, 4])
