"""SSD: "SSD: Single Shot MultiBox Detector" (Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg 2016,
arXiv:1512.02325): default boxes, matching, hard negative mining and the MultiBox loss.

* Default boxes (sec. 2.2, "Choosing scales and aspect ratios"): on the k-th of m feature maps,
  scale s_k = s_min + (s_max - s_min)(k - 1)/(m - 1) (eq. 4; s_min 0.2, s_max 0.9), boxes of
  width s_k sqrt(a_r) and height s_k / sqrt(a_r) for each aspect ratio a_r, plus one of scale
  s'_k = sqrt(s_k s_{k+1}) for a_r = 1, centred at ((i + 0.5)/|f_k|, (j + 0.5)/|f_k|), in
  coordinates relative to the image. SSD300 (sec. 3, Table/Figure 2 and the authors' Caffe
  model) uses maps 38, 19, 10, 5, 3, 1 with {1, 2, 1/2} on the first and last two and {1, 2, 3,
  1/2, 1/3} elsewhere: 8,732 default boxes (Table 7: "number of boxes 8732"). On COCO (sec. 3.4)
  "our smallest default box has a scale of 0.15 instead of 0.2, and the scale of the default box
  on conv4_3 is 0.07 (e.g. 21 pixels for a 300 x 300 image)": sizes 21, 45, 99, 153, 207, 261 and
  315 pixels of 300 (`SSD300_SCALES`, torchvision's `ssd300_vgg16` scales), the COCO model's.
  Centres follow the Caffe model and torchvision: (i + 0.5) * step with steps of 8, 16, 32, 64,
  100, 300 pixels (`SSD300_STEPS`; 300 / 8 = 37.5 is not the 38 of the map), and as torchvision's
  `DefaultBoxGenerator` only the widths and heights are clipped, to 1 (`clip='sizes'`): boxes at
  the border reach out of the image. So `ssd300_vgg16`'s 8,732 boxes are torchvision's, in its
  order (tests/parity/test_ssd_parity.py).
* Matching (sec. 2.2, "Matching strategy"): each ground-truth box goes to the default box of best
  Jaccard overlap, then every default box to the ground truth it overlaps by more than 0.5.
* Loss (eq. 1-3): L = (L_conf + alpha L_loc) / N over the N matched (positive) boxes, L_loc the
  smooth L1 of the encoded offsets (`boxes.encode`, variances 0.1 / 0.2) of positives, L_conf the
  softmax cross-entropy of positives and of the hardest negatives.
* Hard negative mining (sec. 2.2): negatives are sorted by their confidence loss and the top ones
  kept so that negatives : positives is at most 3 : 1. L = 0 when N = 0 (eq. 1).
* The network (sec. 2.1, Figure 2, sec. 3 "Base network"): VGG-16's convolutions (pool3 rounding
  up, pool5 turned into a 3x3 stride-1 pool), fc6 as a 3x3 convolution with dilation 6 and 1024
  channels, fc7 as 1x1 with 1024, conv4_3 L2-normalised with a learned per-channel scale starting
  at 20 (ParseNet; sec. 3.1), and four extra blocks (1x1 then 3x3, stride 2 twice, then unpadded
  twice) giving 10x10, 5x5, 3x3, 1x1 maps; on each of the six maps a 3x3 convolution predicts, per
  default box, 1 + C class scores and 4 offsets. `ssd300_vgg16` (91 COCO classes with background,
  as torchvision's) has 35,641,826 parameters, torchvision's count.
* Inference (sec. 3 "Data augmentation" / "Inference time"): per class, boxes above a confidence
  of 0.01, non-maximum suppression at Jaccard overlap 0.45, the top 200 detections kept
  (`detections`; here the `top_k` best (box, class) pairs are the candidates of the class-aware
  suppression, default 100, COCO's maxDets).
* `ssd_scenes`: the same network shrunk for 64x64 scenes: a VGG-like trunk of widths 32..128
  (`SCENES_VGG`), conv4_3 at 8x8, fc6/fc7 of 256 channels at 4x4 and two extra stride-2 blocks
  (2x2, 1x1): four maps, 372 default boxes, scales 0.1 then 0.25 to 0.85 (conv4_3 at 0.1 as the
  VOC SSD300 of sec. 3.1, the rest spaced as eq. 4) for objects of 8 to 35 pixels.
* Conversion: `detection.torchvision_convert.from_torchvision` maps torchvision's
  `ssd300_vgg16` state dict onto `SSD` (the trunk's `features_{i}` are numbered by `config`, not as
  torchvision's Sequentials); the heads' outputs are already in torchvision's order (per location,
  per default box, then classes / offsets), so the head kernels convert unpermuted.
Departures: `ssd_scenes` keeps the paper's centres (i + 0.5) / |f_k| and clips its boxes' corners
to the image (`clip='corners'`); no data augmentation (sec. 2.2's patch sampling) lives here.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.convnets import vgg
from jaxpapers.detection import boxes as box_lib

SSD300_MAPS = (38, 19, 10, 5, 3, 1)
SSD300_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD300_SCALES = tuple(s / 300 for s in (21, 45, 99, 153, 207, 261, 315))
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SCENES_VGG = (32, 'M', 64, 'M', 128, 128, 'M', 128, 128, 'M', 128, 128, 'M')


def paper_scales(m: int, s_min: float = 0.2, s_max: float = 0.9) -> tuple[float, ...]:
  """Eq. 4's m scales and one more (s_{m+1}, for the last map's extra box s'_m)."""
  return tuple(s_min + (s_max - s_min) * k / (m - 1) for k in range(m + 1))


def default_boxes(feature_sizes: Sequence[int], scales: Sequence[float],
                  ratios: Sequence[Sequence[float]], steps: Sequence[float] | None = None,
                  clip: str = 'corners') -> np.ndarray:
  """Default boxes [D, 4], xyxy relative to the image, in the order of the heads' outputs: map by
  map, then row, column, and per location [s_k, s'_k, then each ratio r and 1/r].

  `steps`: the spacing of the centres on each map as a fraction of the image (the Caffe model's
  step / image size), centres at (i + 0.5) * step; None for the paper's 1 / |f_k|. `clip`:
  'corners' clips the boxes to the image, 'sizes' clamps widths and heights to 1 (torchvision's
  `DefaultBoxGenerator`), 'none' keeps them.
  """
  if clip not in ('corners', 'sizes', 'none'):
    raise ValueError(f"clip={clip!r}: expected 'corners', 'sizes' or 'none'")
  out = []
  for k, size in enumerate(feature_sizes):
    s, s_next = scales[k], np.sqrt(scales[k] * scales[k + 1])
    shapes = [(s, s), (s_next, s_next)]
    for r in ratios[k]:
      shapes += [(s * np.sqrt(r), s / np.sqrt(r)), (s / np.sqrt(r), s * np.sqrt(r))]
    if clip == 'sizes':
      shapes = np.minimum(shapes, 1.0)
    centres = (np.arange(size) + 0.5) * (1 / size if steps is None else steps[k])
    cy, cx = np.meshgrid(centres, centres, indexing='ij')
    for y, x in zip(cy.ravel(), cx.ravel()):
      out += [(x - w / 2, y - h / 2, x + w / 2, y + h / 2) for w, h in shapes]
  result = np.array(out, np.float32)
  return np.clip(result, 0.0, 1.0) if clip == 'corners' else result


def match(anchors: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
          threshold: float = 0.5) -> tuple[jax.Array, jax.Array]:
  """Per default box, its class target (0 background, 1 + class) and matched box [D, 4].

  gt_boxes [M, 4], gt_labels [M] with -1 for padding. A ground truth's best default box is
  always matched to it, whatever their overlap.
  """
  valid = gt_labels >= 0
  overlaps = jnp.where(valid[None, :], box_lib.iou(anchors, gt_boxes), -1.0)  # [D, M]
  best_gt = jnp.argmax(overlaps, axis=1)
  best_overlap = jnp.max(overlaps, axis=1)
  best_anchor = jnp.argmax(overlaps, axis=0)  # [M]
  # Force each valid ground truth onto its best default box (later ground truths win ties).
  forced = jnp.where(valid, best_anchor, anchors.shape[0])  # out of range: dropped
  best_gt = best_gt.at[forced].set(jnp.arange(gt_boxes.shape[0]), mode='drop')
  best_overlap = best_overlap.at[forced].set(2.0, mode='drop')
  positive = best_overlap > threshold
  labels = jnp.where(positive, gt_labels[best_gt] + 1, 0)
  return labels, gt_boxes[best_gt]


def hard_negatives(background_loss: jax.Array, positive: jax.Array,
                   ratio: float = 3.0) -> jax.Array:
  """The negatives kept [D]: the `ratio` * #positives of highest background loss."""
  loss = jnp.where(positive, -jnp.inf, background_loss)
  rank = jnp.argsort(jnp.argsort(-loss))  # 0 for the hardest negative
  return (~positive) & (rank < ratio * positive.sum())


def multibox_loss(class_logits: jax.Array, box_offsets: jax.Array, anchors: jax.Array,
                  gt_boxes: jax.Array, gt_labels: jax.Array, alpha: float = 1.0,
                  neg_pos_ratio: float = 3.0) -> dict[str, jax.Array]:
  """Eq. 1 for one image: logits [D, 1 + C], offsets [D, 4]; returns loss, conf, loc, positives."""
  labels, matched = match(anchors, gt_boxes, gt_labels)
  positive = labels > 0
  ce = optax.softmax_cross_entropy_with_integer_labels(class_logits, labels)
  background = optax.softmax_cross_entropy_with_integer_labels(
      class_logits, jnp.zeros_like(labels))
  negative = hard_negatives(jax.lax.stop_gradient(background), positive, neg_pos_ratio)
  targets = box_lib.encode(matched, anchors)
  loc = optax.huber_loss(box_offsets, targets, delta=1.0).sum(-1)  # smooth L1 (eq. 2)
  n = positive.sum()
  conf = jnp.sum(ce * (positive | negative))
  loc = jnp.sum(loc * positive)
  scale = jnp.where(n > 0, 1.0 / jnp.maximum(n, 1), 0.0)
  return {'loss': (conf + alpha * loc) * scale, 'conf': conf * scale, 'loc': loc * scale,
          'positives': n}


def detections(class_logits: jax.Array, box_offsets: jax.Array, anchors: jax.Array,
               image_size: Sequence[int], top_k: int = 100, score_threshold: float = 0.01,
               iou_threshold: float = 0.45) -> jax.Array:
  """Detections [B, top_k, 6] (x0, y0, x1, y1 in pixels, score, class index without background;
  score 0 for suppressed rows) from logits [B, D, 1 + C] and offsets [B, D, 4]: the `top_k` best
  (box, class) pairs above `score_threshold`, then greedy class-aware non-maximum suppression."""
  h, w = image_size

  def one(logits, offsets):
    prob = jax.nn.softmax(logits, -1)[:, 1:]
    num_classes = prob.shape[-1]
    boxes = jnp.clip(box_lib.decode(offsets, anchors), 0.0, 1.0)
    scores, index = jax.lax.top_k(prob.reshape(-1), top_k)
    labels, boxes = index % num_classes, boxes[index // num_classes]
    keep = box_lib.nms(boxes, scores, scores > score_threshold, iou_threshold, groups=labels)
    pixels = boxes * jnp.array([w, h, w, h], boxes.dtype)
    return jnp.concatenate([pixels, jnp.where(keep, scores, 0.0)[:, None],
                            labels[:, None].astype(boxes.dtype)], -1)

  return jax.vmap(one)(class_logits, box_offsets)


class SSD(nn.Module):
  """SSD300's network: image [B, H, W, 3] -> class logits [B, D, 1 + C], offsets [B, D, 4]."""
  num_classes: int = 91  # including background (index 0)
  config: Sequence[int | str] = vgg.CONFIGS['D']
  fc_features: int = 1024
  extra: Sequence[tuple[int, int]] = ((256, 512), (128, 256), (128, 256), (128, 256))
  boxes_per_location: Sequence[int] = (4, 6, 6, 6, 4, 4)
  # The default boxes of the maps the preset's input size gives (`default_boxes`).
  feature_sizes: Sequence[int] = SSD300_MAPS
  scales: Sequence[float] = SSD300_SCALES
  ratios: Sequence[Sequence[float]] = SSD300_RATIOS
  # Centre spacing in pixels of the `image_size` input (None: 1 / |f_k|), and `default_boxes`' clip.
  steps: Sequence[int] | None = SSD300_STEPS
  image_size: int = 300
  clip: str = 'sizes'

  def default_boxes(self) -> np.ndarray:
    steps = None if self.steps is None else [step / self.image_size for step in self.steps]
    return default_boxes(self.feature_sizes, self.scales, self.ratios, steps, self.clip)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    del train
    maps, pools = [], 0
    for i, v in enumerate(self.config):
      if v == 'M':
        pools += 1
        if pools == 4:  # conv4_3, before pool4
          norm = x * jax.lax.rsqrt(jnp.sum(x * x, -1, keepdims=True) + 1e-20)
          scale = self.param('conv4_3_scale', nn.initializers.constant(20.0), (x.shape[-1],))
          maps.append(norm * scale)
        if pools == 5:
          x = conv_layers.pool(x, 'max', 3, 1, padding=1)
        else:
          x = conv_layers.pool(x, 'max', 2, 2, ceil_mode=True)
        continue
      x = nn.relu(nn.Conv(v, (3, 3), padding=1, name=f'features_{i}')(x))
    x = nn.relu(nn.Conv(self.fc_features, (3, 3), padding=6, kernel_dilation=6, name='fc6')(x))
    x = nn.relu(nn.Conv(self.fc_features, (1, 1), name='fc7')(x))
    maps.append(x)
    for i, (inner, out) in enumerate(self.extra):
      x = nn.relu(nn.Conv(inner, (1, 1), name=f'extra{i}_1')(x))
      stride, pad = (2, 1) if i < 2 else (1, 0)  # SSD300: 19 -> 10 -> 5, then 5 -> 3 -> 1
      x = nn.relu(nn.Conv(out, (3, 3), strides=stride, padding=pad, name=f'extra{i}_2')(x))
      maps.append(x)
    sizes = tuple(m.shape[1] for m in maps)
    if sizes != tuple(self.feature_sizes):
      raise ValueError(f'SSD maps of sizes {sizes} for this input; the default boxes are for '
                       f'{tuple(self.feature_sizes)}')
    logits, offsets = [], []
    for k, (f, n) in enumerate(zip(maps, self.boxes_per_location)):
      b = f.shape[0]
      logits.append(nn.Conv(n * self.num_classes, (3, 3), padding=1, name=f'cls{k}')(f)
                    .reshape(b, -1, self.num_classes))
      offsets.append(nn.Conv(n * 4, (3, 3), padding=1, name=f'box{k}')(f).reshape(b, -1, 4))
    return jnp.concatenate(logits, 1), jnp.concatenate(offsets, 1)


_PAPER = 'SSD: Single Shot MultiBox Detector (Liu et al. 2016, arXiv:1512.02325)'
zoo.register('ssd300_vgg16', lambda: SSD(), inputs=zoo.image_input(300, 300, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=35_641_826,
             reference_source='torchvision ssd300_vgg16 (91 classes)')
zoo.register('ssd_scenes', lambda: SSD(
    num_classes=6, config=SCENES_VGG, fc_features=256, extra=((64, 128), (64, 128)),
    boxes_per_location=(4, 6, 4, 4), feature_sizes=(8, 4, 2, 1),
    scales=(0.1, 0.25, 0.45, 0.65, 0.85), ratios=((2,), (2, 3), (2,), (2,)), steps=None,
    image_size=64, clip='corners'),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
