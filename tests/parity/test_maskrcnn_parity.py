"""torchvision's Mask R-CNN on random weights, converted: the same features, RPN outputs, anchors,
box-head and mask-head outputs on given RoIs, and eval-mode detections. Parameter counts of the
presets against torchvision. Skipped where torchvision is not installed (`make parity`).

One ResNet-50-FPN Mask R-CNN with 3 classes (so that softmax scores pass the 0.05 threshold and
detections are not empty on random weights) and 200 proposals at test time; its BN statistics are
redrawn so that evaluation-mode BN is not the identity. (The RPN's initial std of 0.01 gives
objectness logits of a few units: a much larger spread saturates float32 sigmoids into ties, which
torch and this code order differently.)
"""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from torchvision.models import detection as tv_detection  # noqa: E402  (after the skips)
from torchvision.models.detection.image_list import ImageList  # noqa: E402

from jaxpapers import zoo  # noqa: E402
from jaxpapers.detection import mask_rcnn, torchvision_convert  # noqa: E402

H, W = 128, 160


def _close(ours, expected, rtol=1e-4):
  ours, expected = np.asarray(ours), np.asarray(expected)
  assert ours.shape == expected.shape
  np.testing.assert_allclose(ours, expected, atol=rtol * max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize('name, build', [('maskrcnn_resnet50_fpn', tv_detection.maskrcnn_resnet50_fpn),
                                         ('fasterrcnn_resnet50_fpn',
                                          tv_detection.fasterrcnn_resnet50_fpn)])
def test_parameter_counts_equal_torchvision(name, build):
  reference = build(weights=None, weights_backbone=None)
  assert zoo.count_params(name) == sum(p.numel() for p in reference.parameters())
  assert zoo.get(name).reference_params == zoo.count_params(name)


@pytest.fixture(scope='module')
def models():
  torch.manual_seed(0)
  reference = tv_detection.maskrcnn_resnet50_fpn(
      weights=None, weights_backbone=None, num_classes=3, rpn_post_nms_top_n_test=200).eval()
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for module in reference.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.1, 0.1, generator=generator)
        module.running_var.uniform_(0.8, 1.2, generator=generator)
  model = mask_rcnn.MaskRCNN(mask_rcnn.MaskRCNNConfig(num_classes=3, rpn_post_nms_top_n=(2000, 200)))
  variables = torchvision_convert.from_torchvision(
      model, {k: v.numpy() for k, v in reference.state_dict().items()})
  image = torch.randn(1, 3, H, W, generator=generator)
  return reference, model, variables, image


def _apply(model, variables, method, *args):
  return jax.jit(functools.partial(model.apply, method=method))(variables, *args)


def _nhwc(x):
  return x.numpy().transpose(0, 2, 3, 1)


def test_features_rpn_and_anchors_match(models):
  reference, model, variables, image = models
  with torch.no_grad():
    features = list(reference.backbone(image).values())
    logits, deltas = reference.rpn.head(features)
    anchors = reference.rpn.anchor_generator(ImageList(image, [(H, W)]), features)[0]
  ours = _apply(model, variables, 'features', _nhwc(image))
  assert len(ours) == len(features) == 5
  for a, b in zip(ours, features):
    _close(a, _nhwc(b))
  objectness, offsets = _apply(model, variables, 'rpn', ours)
  _close(objectness, np.concatenate([_nhwc(t).reshape(1, -1) for t in logits], 1))
  expected = np.concatenate([d.numpy().reshape(1, -1, 4, *d.shape[2:]).transpose(0, 3, 4, 1, 2)
                             .reshape(1, -1, 4) for d in deltas], 1)
  _close(offsets, expected)
  np.testing.assert_array_equal(
      mask_rcnn.anchors((H, W), [f.shape[1:3] for f in ours], model.config.anchor_sizes,
                        model.config.aspect_ratios), anchors.numpy())


def test_box_and_mask_heads_match_on_given_boxes(models):
  reference, model, variables, image = models
  rng = np.random.default_rng(0)
  lo = rng.uniform(-20, 100, (12, 2))
  size = np.exp(np.linspace(np.log(4), np.log(600), 12))[:, None] * rng.uniform(0.7, 1.4, (12, 2))
  rois = np.concatenate([lo, lo + size], 1).astype(np.float32)
  np.testing.assert_array_equal(np.unique(mask_rcnn.fpn_levels(rois)), [2, 3, 4, 5])
  with torch.no_grad():
    features = reference.backbone(image)
    boxes = [torch.tensor(rois)]
    pooled = reference.roi_heads.box_roi_pool(features, boxes, [(H, W)])
    logits, deltas = reference.roi_heads.box_predictor(reference.roi_heads.box_head(pooled))
    masks = reference.roi_heads.mask_predictor(reference.roi_heads.mask_head(
        reference.roi_heads.mask_roi_pool(features, boxes, [(H, W)])))
  ours = _apply(model, variables, 'features', _nhwc(image))
  our_logits, our_deltas = _apply(model, variables, 'box_outputs', ours, rois[None])
  _close(our_logits[0], logits.numpy())
  _close(our_deltas[0], deltas.numpy().reshape(12, -1, 4))
  our_masks = _apply(model, variables, 'mask_outputs', ours, rois[None])
  _close(our_masks[0], masks.numpy().transpose(0, 2, 3, 1))


def test_eval_mode_detections_match(models):
  reference, model, variables, image = models
  with torch.no_grad():
    features = reference.backbone(image)
    proposals, _ = reference.rpn(ImageList(image, [(H, W)]), features)
    found, _ = reference.roi_heads(features, proposals, [(H, W)])
  found = {k: v.numpy() for k, v in found[0].items()}
  n = len(found['scores'])
  assert 0 < n < model.config.detections_per_image
  ours = jax.tree.map(lambda x: np.asarray(x)[0], jax.jit(model.apply)(variables, _nhwc(image)))
  scale = max(H, W)
  np.testing.assert_allclose(ours['boxes'][:n], found['boxes'], atol=1e-3 * scale)
  np.testing.assert_allclose(ours['scores'][:n], found['scores'], atol=1e-4)
  np.testing.assert_array_equal(ours['labels'][:n], found['labels'])
  np.testing.assert_array_equal(ours['scores'][n:], 0.0)
  # Mask logits on random weights reach tens (probabilities 1e-22 .. 1 - 1e-7): the boxes' float
  # differences (they come through two decodings) move a few sigmoid-steep pixels by up to 1e-2.
  difference = np.abs(ours['masks'][:n] - found['masks'][:, 0])
  assert difference.max() < 2e-2 and difference.mean() < 1e-4
