"""Mask R-CNN: "Mask R-CNN" (He, Gkioxari, Dollar, Girshick 2017, arXiv:1703.06870), with the region
proposal network and box head of "Faster R-CNN" (Ren, He, Girshick, Sun 2015, arXiv:1506.01497) on a
ResNet + FPN backbone ("Feature Pyramid Networks for Object Detection", Lin et al. 2016,
arXiv:1612.03144, sec. 4). Faster R-CNN is this model with `masks=False`.

Layout and conventions are torchvision's `maskrcnn_resnet50_fpn` (the reference of the parity test,
tests/parity/test_maskrcnn_parity.py); class 0 is the background, boxes are (x0, y0, x1, y1) pixels.

* Backbone (FPN sec. 4.1): `dense.fpn.ResNetFPN`, P2..P5 from C2..C5 and P6 by stride-2
  subsampling of P5 (RPN only). With `frozen_batch_norm` (the paper presets) the backbone's batch
  norms always use their stored statistics, as torchvision's FrozenBatchNorm2d when it fine-tunes
  ImageNet weights; their scale and bias stay flax parameters (see the counts below).
* Anchors (Faster R-CNN sec. 3.1.1, FPN sec. 4.1): one size per level (32..512 pixels on P2..P6)
  and 3 aspect ratios {1:2, 1:1, 2:1}; torchvision's layout: width size / sqrt(r), height
  size * sqrt(r), corners rounded, placed at (x, y) = (j, i) * stride, per level row by row with the
  3 anchors of a location together (`anchors`).
* RPN head (Faster R-CNN sec. 3.1, Figure 3): a 3x3 convolution and ReLU shared by all levels, then
  1x1 convolutions to one objectness logit (torchvision's sigmoid form of the 2-way softmax) and 4
  offsets per anchor (`boxes.encode` with weights 1).
* Proposals (sec. 3.3 / torchvision's `filter_proposals`), static shapes throughout: the top
  `rpn_pre_nms_top_n` anchors of each level by objectness, decoded (size offsets clamped at
  log(1000/16)), clipped to the image, boxes under 1e-3 pixel dropped, NMS at IoU 0.7 within each
  level, the best `rpn_post_nms_top_n` kept: a fixed number of rows with a validity mask.
* RPN training (sec. 3.1.2): anchors of IoU > 0.7 with a ground truth, and each ground truth's
  best anchors (all ties), are positive, IoU < 0.3 negative, the rest ignored; 256 anchors sampled
  per image with at most half positive; loss = BCE of the sampled objectness + smooth L1
  (beta 1/9) of the positives' offsets, both divided by the number sampled.
* RoI sampling (Fast R-CNN's, sec. 3.2 of Faster R-CNN): the ground-truth boxes are appended to the
  proposals, proposals of IoU >= 0.5 take their ground truth's class, the rest background; 512
  RoIs per image, at most 25% positive.
* RoI features (FPN eq. 1): a RoI of width w and height h is pooled from level
  k = floor(k0 + log2(sqrt(wh) / 224)), k0 = 4, clamped to the pyramid (P2..P5); by RoIAlign
  (`roi_align.py`, Mask R-CNN sec. 3, sampling ratio 2): 7x7 for boxes, 14x14 for masks.
* Box head (FPN sec. 4.2, torchvision's TwoMLPHead): two 1024-d fully connected layers with ReLU,
  then class logits and class-specific offsets (weights 10, 10, 5, 5). Loss: cross-entropy of the
  sampled RoIs + smooth L1 (beta 1/9) of the true class's offsets of positives, divided by the number
  sampled.
* Mask head (Mask R-CNN sec. 3 "Network Architecture", Figure 4 right): four 3x3 convolutions of
  256 with ReLU, a 2x2 stride-2 transposed convolution with ReLU, a 1x1 convolution to one 28x28
  mask logit map per class. Loss (sec. 3, L_mask): per-pixel sigmoid BCE of the ground-truth
  class's map only (no competition among classes), averaged over the positive RoIs' pixels; the
  targets are the instance masks cropped and resized to 28x28 by RoIAlign over the RoI's box.
* Inference (sec. 3 "Implementation Details: Inference"): class-specific boxes decoded from the
  proposals and clipped; (box, class) pairs of score > 0.05 and size >= 0.01; NMS at IoU 0.5 within
  each class; the top 100; the mask head runs on these boxes and the predicted class's sigmoid map is
  the mask, `paste_masks` resamples it into the image (thresholded at 0.5 for segm AP).

Counts: `maskrcnn_resnet50_fpn` has 44,454,513 parameters and `fasterrcnn_resnet50_fpn` 41,808,406,
torchvision's `maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)` /
`fasterrcnn_resnet50_fpn(...)` `sum(p.numel() for p in model.parameters())` (torchvision 0.29.1),
which build the backbone with BatchNorm2d. The counts the torchvision docs list, 44,401,393 and
41,755,286, are of the pretrained builds, whose FrozenBatchNorm2d keeps the 53,120 BN scales and
biases as buffers: 53,120 fewer. Here they are flax parameters, and `frozen_batch_norm` only
freezes the statistics (not the affine transform: an optimiser choice, as in DETR's presets).

Departures: the input is the image tensor as torchvision's GeneralizedRCNNTransform hands it to
the network (normalised, resized; that transform is data preparation here) and all images of a
batch share one size. Static shapes: proposals, RoIs and detections are fixed-size with validity
masks and zero scores for padding; the mask head trains on the first
roi_batch_size * roi_positive_fraction sampled RoIs (where the positives are placed), which holds
every positive. Final detections are chosen among the `detection_candidates` best (box, class)
pairs before NMS (torchvision: all pairs above the score threshold; equal whenever fewer pairs pass
it). Mask targets use RoIAlign with `aligned=True` (Detectron2's half-pixel correction, so that a
box equal to an instance's pixel box reproduces its mask; torchvision's `project_masks_on_boxes`
uses aligned=False and an adaptive sampling ratio). `paste_masks` samples the 28x28 map bilinearly
at every pixel centre (torchvision resizes it to the rounded box with F.interpolate and pastes it:
the same up to a pixel at the border).

`maskrcnn_scenes`: the same detector for the 64x64 scenes set (5 classes):
ResNet stages (1, 1, 1) of basic blocks (C2..C4 at strides 4, 8, 16), FPN of 64 channels with the
P5 max-pool level, anchors of 8, 16, 32 and 48 pixels, a canonical RoI scale of 64 (the image
size, as 224 is ImageNet's), fewer proposals and RoIs (64 per image), a 256-d box head and a mask
head of four 32-channel convolutions; trainable batch norms (trained from scratch).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.dense.fpn import ResNetFPN
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection.matching import threshold_match
from jaxpapers.detection.roi_align import roi_align

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
ROI_VARIANCES = (0.1, 0.1, 0.2, 0.2)  # the inverses of the box head's weights (10, 10, 5, 5)
SMOOTH_L1_BETA = 1.0 / 9


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig:
  """Sizes and thresholds (defaults: torchvision's maskrcnn_resnet50_fpn on COCO's 91 ids)."""
  num_classes: int = 91  # with the background, class 0
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = 'bottleneck'
  fpn_features: int = 256
  frozen_batch_norm: bool = True
  anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512)  # one per pyramid level, finest first
  aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)  # (training, inference), per level
  rpn_post_nms_top_n: tuple[int, int] = (2000, 1000)
  rpn_nms_threshold: float = 0.7
  rpn_iou_thresholds: tuple[float, float] = (0.3, 0.7)  # negative below, positive above
  rpn_batch_size: int = 256
  rpn_positive_fraction: float = 0.5
  roi_batch_size: int = 512
  roi_positive_fraction: float = 0.25
  roi_iou_threshold: float = 0.5
  representation_size: int = 1024
  box_score_threshold: float = 0.05
  box_nms_threshold: float = 0.5
  detections_per_image: int = 100
  detection_candidates: int = 1000
  masks: bool = True
  mask_layers: Sequence[int] = (256, 256, 256, 256)
  canonical_scale: float = 224.0
  canonical_level: int = 4


# --- anchors, levels, targets: pure functions of arrays ---

def anchors(image_size: Sequence[int], feature_sizes: Sequence[Sequence[int]],
            sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """Anchors [A, 4] of every level (torchvision's AnchorGenerator layout, module docstring)."""
  out = []
  ratios = np.asarray(aspect_ratios, np.float32)
  h_ratios = np.sqrt(ratios)
  for (fh, fw), size in zip(feature_sizes, sizes):
    ws, hs = size / h_ratios, size * h_ratios
    base = np.round(np.stack([-ws, -hs, ws, hs], 1) / 2)
    sy, sx = image_size[0] // fh, image_size[1] // fw
    ys, xs = np.meshgrid(np.arange(fh) * sy, np.arange(fw) * sx, indexing='ij')
    shifts = np.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4)
    out.append((shifts + base[None]).reshape(-1, 4))
  return np.concatenate(out).astype(np.float32)


def fpn_levels(boxes: jax.Array, canonical_scale: float = 224.0, canonical_level: int = 4,
               min_level: int = 2, max_level: int = 5) -> jax.Array:
  """FPN eq. 1: k = floor(k0 + log2(sqrt(wh) / 224)), clamped to [min_level, max_level]."""
  scale = jnp.sqrt(box_lib.area(boxes))
  k = jnp.floor(canonical_level + jnp.log2(scale / canonical_scale) + 1e-6)
  return jnp.clip(k, min_level, max_level).astype(jnp.int32)


def multiscale_roi_align(features: Sequence[jax.Array], boxes: jax.Array, batch_index: jax.Array,
                         output_size: int, canonical_scale: float = 224.0,
                         canonical_level: int = 4) -> jax.Array:
  """RoIAlign [K, s, s, C] of each box from its FPN level; features[i] is P_{2+i} (stride 2^(2+i)).
  One RoIAlign over the levels zero-padded to P2's size and stacked, each box reading its own."""
  level = fpn_levels(boxes, canonical_scale, canonical_level, 2, 1 + len(features)) - 2
  b, height, width = features[0].shape[:3]
  stacked = jnp.concatenate([jnp.pad(f, ((0, 0), (0, height - f.shape[1]), (0, width - f.shape[2]),
                                         (0, 0))) for f in features])
  sizes = jnp.array([f.shape[1:3] for f in features])
  scales = 2.0 ** -(2.0 + jnp.arange(len(features)))
  return roi_align(stacked, boxes, level * b + batch_index, (output_size, output_size),
                   scales[level], 2, valid_size=sizes[level])


def sample(labels: jax.Array, key: jax.Array, batch_size: int,
           positive_fraction: float) -> tuple[jax.Array, jax.Array]:
  """torchvision's BalancedPositiveNegativeSampler as masks: of `labels` [N] (> 0 positive, 0
  negative, < 0 ignored) at most batch_size * positive_fraction random positives and random
  negatives up to `batch_size` in all. Returns (positive, negative) bool [N]."""
  positive, negative = labels > 0, labels == 0
  u = jax.random.uniform(key, labels.shape)

  def rank(mask):  # 0, 1, ... over the True entries in random order
    order = jnp.argsort(jnp.where(mask, u, 2.0))
    return jnp.zeros(labels.shape, jnp.int32).at[order].set(jnp.arange(labels.shape[0]))

  num_positive = jnp.minimum(positive.sum(), int(batch_size * positive_fraction))
  num_negative = jnp.minimum(negative.sum(), batch_size - num_positive)
  return positive & (rank(positive) < num_positive), negative & (rank(negative) < num_negative)


def smooth_l1(x: jax.Array, beta: float = SMOOTH_L1_BETA) -> jax.Array:
  return optax.huber_loss(x, delta=beta) / beta


def clip_to_image(boxes: jax.Array, image_size: Sequence[int]) -> jax.Array:
  h, w = image_size
  return jnp.clip(boxes, 0.0, jnp.array([w, h, w, h], boxes.dtype))


def proposals(objectness: jax.Array, deltas: jax.Array, anchor_boxes: jax.Array,
              level_sizes: Sequence[int], image_size: Sequence[int], pre_nms_top_n: int,
              post_nms_top_n: int, nms_threshold: float,
              min_size: float = 1e-3) -> tuple[jax.Array, jax.Array]:
  """One image's proposals [P, 4] and validity [P] from objectness [A] and offsets [A, 4]."""
  boxes = box_lib.decode(deltas, anchor_boxes, RPN_WEIGHTS, box_lib.MAX_LOG_SCALE)
  index, level, start = [], [], 0
  for k, n in enumerate(level_sizes):
    _, top = jax.lax.top_k(objectness[start:start + n], min(pre_nms_top_n, n))
    index.append(top + start)
    level.append(jnp.full(top.shape, k))
    start += n
  index, level = jnp.concatenate(index), jnp.concatenate(level)
  scores = jax.nn.sigmoid(objectness[index])
  boxes = clip_to_image(boxes[index], image_size)
  valid = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
  keep = box_lib.nms(boxes, scores, valid, nms_threshold, groups=level)
  _, best = jax.lax.top_k(jnp.where(keep, scores, -1.0), min(post_nms_top_n, index.shape[0]))
  return boxes[best], keep[best]


def rpn_loss(objectness: jax.Array, deltas: jax.Array, anchor_boxes: jax.Array,
             gt_boxes: jax.Array, gt_valid: jax.Array, key: jax.Array,
             config: MaskRCNNConfig) -> dict[str, jax.Array]:
  """RPN loss of a batch: objectness [B, A], deltas [B, A, 4], ground truth [B, G, 4] / [B, G]."""

  def one(obj, delta, boxes, valid, k):
    matches = threshold_match(box_lib.iou(boxes, anchor_boxes), valid, *config.rpn_iou_thresholds,
                              True)
    labels = jnp.where(matches >= 0, 1, jnp.where(matches == -1, 0, -1))
    positive, negative = sample(labels, k, config.rpn_batch_size, config.rpn_positive_fraction)
    targets = box_lib.encode(boxes[jnp.maximum(matches, 0)], anchor_boxes, RPN_WEIGHTS)
    box = jnp.sum(smooth_l1(delta - targets).sum(-1) * positive)
    bce = optax.sigmoid_binary_cross_entropy(obj, positive.astype(obj.dtype))
    return box, jnp.sum(bce * (positive | negative)), jnp.sum(positive | negative)

  keys = jax.random.split(key, objectness.shape[0])
  box, bce, count = jax.vmap(one)(objectness, deltas, gt_boxes, gt_valid, keys)
  count = jnp.maximum(count.sum(), 1)
  return {'rpn_objectness': bce.sum() / count, 'rpn_box': box.sum() / count}


def sample_rois(boxes: jax.Array, valid: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
                key: jax.Array, config: MaskRCNNConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One image's RoIs for the heads: the ground truth (labels [G], 1 + class, 0 for padding) is
  appended to the proposals [P, 4] (`valid` [P]), roi_batch_size are sampled (positives first).
  Returns RoIs [S, 4], their labels [S] (1 + class, 0 background, -1 not sampled) and matched
  ground-truth index [S]."""
  gt_valid = gt_labels > 0
  boxes = jnp.concatenate([boxes, gt_boxes])
  valid = jnp.concatenate([valid, gt_valid])
  t = config.roi_iou_threshold
  matches = threshold_match(box_lib.iou(gt_boxes, boxes), gt_valid, t, t, False)
  gt_index = jnp.maximum(matches, 0)
  labels = jnp.where(~valid, -1, jnp.where(matches >= 0, gt_labels[gt_index], 0))
  positive, negative = sample(labels, key, config.roi_batch_size, config.roi_positive_fraction)
  count = min(config.roi_batch_size, boxes.shape[0])
  _, index = jax.lax.top_k(2.0 * positive + 1.0 * negative, count)
  labels = jnp.where((positive | negative)[index], labels[index], -1)
  return boxes[index], labels, gt_index[index]


def mask_targets(gt_masks: jax.Array, rois: jax.Array, gt_index: jax.Array,
                 size: int = 28) -> jax.Array:
  """Mask targets [B, R, size, size]: the matched instance mask (gt_masks [B, G, H, W], index
  gt_index [B, R]) cropped to each RoI [B, R, 4] and resized by RoIAlign (aligned=True)."""
  b, g = gt_masks.shape[:2]
  r = rois.shape[1]
  instance = (jnp.arange(b)[:, None] * g + gt_index).reshape(-1)
  targets = roi_align(gt_masks.reshape(b * g, *gt_masks.shape[2:], 1).astype(jnp.float32),
                      rois.reshape(-1, 4), instance, (size, size), aligned=True)
  return targets.reshape(b, r, size, size)


def detect_boxes(class_probs: jax.Array, deltas: jax.Array, rois: jax.Array, valid: jax.Array,
                 image_size: Sequence[int], config: MaskRCNNConfig):
  """One image's detections from the box head on its proposals: class probabilities [R, C]
  (background first), deltas [R, C, 4], RoIs [R, 4] and validity [R] -> boxes [D, 4], scores [D]
  (0 for padding), labels [D] (1 + class)."""
  num_classes = class_probs.shape[-1]
  boxes = box_lib.decode(deltas, rois[:, None], ROI_VARIANCES, box_lib.MAX_LOG_SCALE)
  boxes = clip_to_image(boxes, image_size)
  boxes = boxes[:, 1:].reshape(-1, 4)
  scores = class_probs[:, 1:].reshape(-1)
  labels = jnp.tile(jnp.arange(1, num_classes), rois.shape[0])
  ok = ((scores > config.box_score_threshold) & jnp.repeat(valid, num_classes - 1)
        & (boxes[:, 2] - boxes[:, 0] >= 1e-2) & (boxes[:, 3] - boxes[:, 1] >= 1e-2))
  top, index = jax.lax.top_k(jnp.where(ok, scores, -1.0),
                             min(config.detection_candidates, scores.shape[0]))
  boxes, labels, ok = boxes[index], labels[index], ok[index]
  keep = box_lib.nms(boxes, top, ok, config.box_nms_threshold, groups=labels)
  final, order = jax.lax.top_k(jnp.where(keep, top, -1.0),
                               min(config.detections_per_image, top.shape[0]))
  return boxes[order], jnp.where(keep[order], final, 0.0), labels[order]


def paste_masks(masks: jax.Array, boxes: jax.Array, image_size: Sequence[int]) -> jax.Array:
  """Masks [K, M, M] (probabilities over their boxes [K, 4]) resampled into the image [K, H, W]:
  each pixel centre read bilinearly from the map, 0 outside the box."""
  h, w = image_size
  m = masks.shape[-1]

  def one(mask, box):
    x0, y0, x1, y1 = box
    u = (jnp.arange(w) + 0.5 - x0) / jnp.maximum(x1 - x0, 1e-6) * m - 0.5
    v = (jnp.arange(h) + 0.5 - y0) / jnp.maximum(y1 - y0, 1e-6) * m - 0.5
    vv, uu = jnp.meshgrid(v, u, indexing='ij')
    return jax.scipy.ndimage.map_coordinates(mask, [vv, uu], order=1, mode='constant')

  return jax.vmap(one)(masks, boxes)


# --- the network ---

class RPNHead(nn.Module):
  """Shared 3x3 convolution + ReLU, then per anchor one objectness logit and 4 offsets."""
  num_anchors: int

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    init = nn.initializers.normal(0.01)
    conv = nn.Conv(features[0].shape[-1], (3, 3), padding=1, kernel_init=init, name='conv')
    cls = nn.Conv(self.num_anchors, (1, 1), kernel_init=init, name='cls_logits')
    box = nn.Conv(4 * self.num_anchors, (1, 1), kernel_init=init, name='bbox_pred')
    logits, deltas = [], []
    for f in features:
      t = nn.relu(conv(f))
      logits.append(cls(t).reshape(f.shape[0], -1))
      deltas.append(box(t).reshape(f.shape[0], -1, 4))
    return jnp.concatenate(logits, 1), jnp.concatenate(deltas, 1)


class TwoMLPHead(nn.Module):
  """RoI features [K, 7, 7, C] -> [K, representation_size] (fc6, fc7 with ReLU)."""
  representation_size: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    init = conv_layers.torch_linear_init
    x = nn.relu(nn.Dense(self.representation_size, kernel_init=init, name='fc6')(x))
    return nn.relu(nn.Dense(self.representation_size, kernel_init=init, name='fc7')(x))


class BoxPredictor(nn.Module):
  """Class logits [K, C] and class-specific offsets [K, C, 4]."""
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    init = conv_layers.torch_linear_init
    logits = nn.Dense(self.num_classes, kernel_init=init, name='cls_score')(x)
    deltas = nn.Dense(4 * self.num_classes, kernel_init=init, name='bbox_pred')(x)
    return logits, deltas.reshape(x.shape[0], self.num_classes, 4)


class MaskHead(nn.Module):
  """3x3 convolutions with ReLU on the 14x14 RoI features."""
  layers: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, features in enumerate(self.layers):
      x = nn.relu(nn.Conv(features, (3, 3), padding=1, kernel_init=conv_layers.he_normal(),
                          name=f'conv{i}')(x))
    return x


class MaskPredictor(nn.Module):
  """2x2 stride-2 transposed convolution + ReLU, then a 1x1 convolution to one map per class."""
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.ConvTranspose(x.shape[-1], (2, 2), strides=(2, 2), padding='VALID',
                         kernel_init=conv_layers.he_normal(), name='conv5_mask')(x)
    return nn.Conv(self.num_classes, (1, 1), kernel_init=conv_layers.he_normal(),
                   name='mask_fcn_logits')(nn.relu(x))


class MaskRCNN(nn.Module):
  """`model(images [B, H, W, 3])` -> detections {'boxes' [B, D, 4], 'scores' [B, D] (0: none),
  'labels' [B, D] (1 + class), 'masks' [B, D, 28, 28] (probabilities over the box)};
  `model.apply(..., method='losses')` the training losses."""
  config: MaskRCNNConfig = MaskRCNNConfig()

  def setup(self):
    c = self.config
    self.backbone = ResNetFPN(c.stage_sizes, c.block, c.fpn_features, extra_max_pool=True)
    self.rpn_head = RPNHead(len(c.aspect_ratios))
    self.box_head = TwoMLPHead(c.representation_size)
    self.box_predictor = BoxPredictor(c.num_classes)
    if c.masks:
      self.mask_head = MaskHead(c.mask_layers)
      self.mask_predictor = MaskPredictor(c.num_classes)

  def features(self, images: jax.Array, train: bool = False) -> list[jax.Array]:
    """P2.. and the extra P6-style level (the last), as FPN maps [B, h, w, d]."""
    return self.backbone(images, train and not self.config.frozen_batch_norm)

  def rpn(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Objectness [B, A] and offsets [B, A, 4] of every anchor (the order of `anchors`)."""
    return self.rpn_head(features)

  def anchors(self, image_size: Sequence[int], features: Sequence[jax.Array]) -> np.ndarray:
    return anchors(image_size, [f.shape[1:3] for f in features], self.config.anchor_sizes,
                   self.config.aspect_ratios)

  def _pool(self, features, rois, size):
    b, r = rois.shape[:2]
    index = jnp.repeat(jnp.arange(b), r)
    return multiscale_roi_align(features[:-1], rois.reshape(-1, 4), index, size,
                                self.config.canonical_scale, self.config.canonical_level)

  def box_outputs(self, features: Sequence[jax.Array], rois: jax.Array):
    """Class logits [B, R, C] and offsets [B, R, C, 4] of RoIs [B, R, 4]."""
    b, r = rois.shape[:2]
    logits, deltas = self.box_predictor(self.box_head(self._pool(features, rois, 7)))
    return logits.reshape(b, r, -1), deltas.reshape(b, r, -1, 4)

  def mask_outputs(self, features: Sequence[jax.Array], rois: jax.Array) -> jax.Array:
    """Mask logits [B, R, 28, 28, C] of RoIs [B, R, 4]."""
    b, r = rois.shape[:2]
    logits = self.mask_predictor(self.mask_head(self._pool(features, rois, 14)))
    return logits.reshape(b, r, *logits.shape[1:])

  def propose(self, images: jax.Array, features: Sequence[jax.Array], objectness: jax.Array,
              deltas: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    c = self.config
    image_size = images.shape[1:3]
    anchor_boxes = jnp.asarray(self.anchors(image_size, features))
    level_sizes = [f.shape[1] * f.shape[2] * len(c.aspect_ratios) for f in features]
    fn = functools.partial(
        proposals, anchor_boxes=anchor_boxes, level_sizes=level_sizes, image_size=image_size,
        pre_nms_top_n=c.rpn_pre_nms_top_n[0 if train else 1],
        post_nms_top_n=c.rpn_post_nms_top_n[0 if train else 1], nms_threshold=c.rpn_nms_threshold)
    return jax.vmap(fn)(jax.lax.stop_gradient(objectness), jax.lax.stop_gradient(deltas))

  def inference_rois(self, images: jax.Array, train: bool = False):
    """The first stage at inference: features and the RPN's proposals [B, R, 4] with their
    validity [B, R], at the inference settings (`rpn_*_top_n[1]`)."""
    features = self.features(images, train)
    objectness, deltas = self.rpn(features)
    rois, valid = self.propose(images, features, objectness, deltas, train=False)
    return features, rois, valid

  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    c = self.config
    features, rois, valid = self.inference_rois(images, train)
    logits, box_deltas = self.box_outputs(features, rois)
    boxes, scores, labels = jax.vmap(functools.partial(
        detect_boxes, image_size=images.shape[1:3], config=c))(
            jax.nn.softmax(logits, -1), box_deltas, rois, valid)
    out = {'boxes': boxes, 'scores': scores, 'labels': labels}
    if c.masks:
      mask_logits = self.mask_outputs(features, boxes)
      picked = jnp.take_along_axis(mask_logits, labels[:, :, None, None, None], -1)[..., 0]
      out['masks'] = jax.nn.sigmoid(picked)
    return out

  def rpn_and_rois(self, images: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
                   key: jax.Array, train: bool):
    """The first stage of training: features, the RPN's loss terms, and the sampled RoIs [B, R, 4]
    with their labels [B, R] (0 background, -1 not sampled) and matched ground truth [B, R]."""
    gt_valid = gt_labels >= 0
    features = self.features(images, train)
    objectness, deltas = self.rpn(features)
    rpn_key, roi_key = jax.random.split(key)
    anchor_boxes = jnp.asarray(self.anchors(images.shape[1:3], features))
    terms = rpn_loss(objectness, deltas, anchor_boxes, gt_boxes, gt_valid, rpn_key, self.config)
    boxes, valid = self.propose(images, features, objectness, deltas, train=True)
    keys = jax.random.split(roi_key, images.shape[0])
    rois, labels, gt_index = jax.vmap(functools.partial(sample_rois, config=self.config))(
        boxes, valid, gt_boxes, jnp.where(gt_valid, gt_labels + 1, 0), keys)
    return features, terms, rois, labels, gt_index

  def losses(self, images: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
             gt_masks: jax.Array | None, key: jax.Array,
             train: bool = True) -> dict[str, jax.Array]:
    """Training losses of a batch: ground-truth boxes [B, G, 4] (pixels), labels [B, G] (class
    index without background, -1 for padding), masks [B, G, H, W] (with `masks`), a key for the
    sampling. Returns 'loss' (the sum) and its terms."""
    c = self.config
    features, terms, rois, labels, gt_index = self.rpn_and_rois(images, gt_boxes, gt_labels, key,
                                                                train)
    logits, box_deltas = self.box_outputs(features, rois)
    sampled, positive = labels >= 0, labels > 0
    count = jnp.maximum(sampled.sum(), 1)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    terms['classifier'] = jnp.sum(ce * sampled) / count
    matched = jnp.take_along_axis(gt_boxes, gt_index[..., None], 1)
    targets = box_lib.encode(matched, rois, ROI_VARIANCES)
    true_deltas = jnp.take_along_axis(box_deltas, jnp.maximum(labels, 0)[..., None, None], 2)[:, :, 0]
    terms['box'] = jnp.sum(smooth_l1(true_deltas - targets).sum(-1) * positive) / count
    if c.masks:
      m = int(c.roi_batch_size * c.roi_positive_fraction)
      mask_rois, mask_positive = rois[:, :m], positive[:, :m]
      mask_logits = self.mask_outputs(features, mask_rois)
      mask_logits = jnp.take_along_axis(
          mask_logits, jnp.maximum(labels[:, :m], 0)[:, :, None, None, None], -1)[..., 0]
      size = mask_logits.shape[2]
      targets = mask_targets(gt_masks, mask_rois, gt_index[:, :m], size)
      bce = optax.sigmoid_binary_cross_entropy(mask_logits, targets)
      pixels = jnp.maximum(mask_positive.sum(), 1) * size * size
      terms['mask'] = jnp.sum(bce * mask_positive[:, :, None, None]) / pixels
    terms['loss'] = sum(terms.values())
    return terms


_PAPER = 'Mask R-CNN (He et al. 2017, arXiv:1703.06870)'
_FASTER = 'Faster R-CNN (Ren et al. 2015, arXiv:1506.01497), with FPN (Lin et al. 2016)'
_TORCHVISION = ('torchvision {}(weights=None, weights_backbone=None): sum of parameters '
                '(BatchNorm2d backbone); the docs\' {} is the FrozenBatchNorm2d build, 53,120 fewer')
zoo.register('maskrcnn_resnet50_fpn', lambda: MaskRCNN(), inputs=zoo.image_input(224, 224, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=44_454_513,
             reference_source=_TORCHVISION.format('maskrcnn_resnet50_fpn', '44,401,393'))
zoo.register('fasterrcnn_resnet50_fpn', lambda: MaskRCNN(MaskRCNNConfig(masks=False)),
             inputs=zoo.image_input(224, 224, 3), apply_kwargs={'train': False}, paper=_FASTER,
             reference_params=41_808_406,
             reference_source=_TORCHVISION.format('fasterrcnn_resnet50_fpn', '41,755,286'))
MASKRCNN_SCENES = MaskRCNNConfig(
    num_classes=6, stage_sizes=(1, 1, 1), block='basic', fpn_features=64, frozen_batch_norm=False,
    anchor_sizes=(8, 16, 32, 48), rpn_pre_nms_top_n=(500, 300), rpn_post_nms_top_n=(200, 100),
    roi_batch_size=64, representation_size=256, detection_candidates=300,
    mask_layers=(32, 32, 32, 32), canonical_scale=64.0)
_SCENES = 'project preset for the 64x64 scenes set'
zoo.register('maskrcnn_scenes', lambda: MaskRCNN(MASKRCNN_SCENES),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source=_SCENES)
