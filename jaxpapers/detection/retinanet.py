"""RetinaNet: "Focal Loss for Dense Object Detection" (Lin, Goyal, Girshick, He, Dollar 2017,
arXiv:1708.02002).

* Focal loss (sec. 3.2, eq. 5): FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t) on every (anchor,
  class) sigmoid output, alpha 0.25, gamma 2 (sec. 3.2, Table 1b); summed over all anchors that are
  not ignored and divided by the number of anchors assigned to a ground-truth box (sec. 4,
  "Inference and Training": "normalized by the number of anchors assigned to a ground-truth box").
  `optax.sigmoid_focal_loss` computes the elementwise term.
* Anchors (sec. 4, "Anchors"): areas 32^2 to 512^2 on P3 to P7, at each level three scales
  {2^0, 2^(1/3), 2^(2/3)} and three aspect ratios {1:2, 1:1, 2:1}: A = 9 anchors per location.
  Order as torchvision's AnchorGenerator (level, row, column, then ratio-major, scale-minor),
  which is also how the heads' outputs are flattened.
* Matching (sec. 4): an anchor is assigned to the ground-truth box of highest IoU when that IoU is
  >= 0.5, to background when it is < 0.4, and ignored in between. As torchvision's Matcher
  (`allow_low_quality_matches`) and Detectron's, every ground truth also keeps the anchors of its
  highest IoU (ties included), whatever that IoU, so small objects are never left unmatched; unlike
  them, only where that IoU is above 0 (`matching.threshold_match`'s `require_overlap`): a ground
  truth that overlaps no anchor would otherwise make every anchor positive.
* Box regression (sec. 4): the standard parameterisation (`boxes.encode`, unit variances as
  torchvision's BoxCoder(1, 1, 1, 1)), with the L1 loss of torchvision and of the RelationNet++
  authors' RetinaNet config (the paper uses smooth L1), on positive anchors, over the same count.
  Both terms are per image (then averaged over the batch), as torchvision.
* Network (sec. 4, Figure 3): ResNet + FPN P3-P7 (`dense.fpn.ResNetFPN` on C3..C5 with
  `extra_convs=2`: P6 a 3x3 stride-2 convolution, P7 the same after a ReLU; torchvision's
  LastLevelP6P7 takes P5 where the paper takes C5), 256 channels; the classification subnet is
  four 3x3 convolutions of 256 with ReLU then a 3x3 convolution to K A outputs, the box subnet
  the same to 4 A, both shared across levels; initialisation (sec. 4.1): Gaussian weights
  sigma 0.01, zero biases, except the classification output's bias -log((1 - pi) / pi), prior
  pi = 0.01.
* Inference (sec. 4, "Inference"): per level the 1,000 highest (anchor, class) scores, then
  a score threshold of 0.05 and class-aware NMS at 0.5 over all levels (`boxes.nms` with the
  classes as groups; static shapes: the candidates are fixed in number), the best 100 kept.
* `retinanet_resnet50_fpn` (torchvision's layout, 91 sigmoid outputs for COCO's ids) has
  34,068,119 parameters: torchvision's documented 34,014,999 plus the backbone's batch-norm scale
  and bias (53,120), which are FrozenBatchNorm2d buffers in torchvision and parameters of flax's
  BatchNorm (as for `detr_resnet50`). `retinanet_scenes`: the same detector for the 64x64 scenes
  set (objects of 8 to 35 pixels): a ResNet with three basic-block stages (one block each),
  P2-P4 (strides 4, 8, 16: 16x16 to 4x4 maps) of 64 channels, anchor sizes 8, 16, 32 with the
  paper's scales and ratios, 100 candidates per level at inference (scenes hold 1 to 4 objects).
Departures: anchor centres at (i + 0.5) * stride (torchvision and Detectron put them at
i * stride and round the anchor shapes); no image resizing or flipping lives here; `train` runs
the backbone's batch norms in training mode (the paper freezes an ImageNet backbone's).
`RetinaNet.bvr` takes RelationNet++'s BVR module (`relationnet_pp.py`), which refines the subnets'
features before their predictors and adds its keypoint loss.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.dense.fpn import ResNetFPN
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection import matching

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
PRIOR = 0.01
ANCHOR_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
UNIT_VARIANCES = (1.0, 1.0, 1.0, 1.0)
BACKGROUND, IGNORED = -1, -2


def anchor_shapes(size: float, scales: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
  """[A, 2] (width, height): ratio r = height / width, area (size * scale)^2; ratio-major."""
  return np.array([(size * s / np.sqrt(r), size * s * np.sqrt(r)) for r in ratios for s in scales],
                  np.float32)


def anchors(levels: Sequence[tuple[int, int, int]], sizes: Sequence[float],
            scales: Sequence[float] = ANCHOR_SCALES,
            ratios: Sequence[float] = ANCHOR_RATIOS) -> np.ndarray:
  """[D, 4] xyxy anchors in pixels over levels of (height, width, stride): level, row, column,
  then shape."""
  out = []
  for (h, w, stride), size in zip(levels, sizes):
    shapes = anchor_shapes(size, scales, ratios)
    cy, cx = np.meshgrid((np.arange(h) + 0.5) * stride, (np.arange(w) + 0.5) * stride,
                         indexing='ij')
    centres = np.stack([cx.ravel(), cy.ravel()], -1)[:, None, :]  # [HW, 1, 2]
    out.append(np.concatenate([centres - shapes / 2, centres + shapes / 2], -1).reshape(-1, 4))
  return np.concatenate(out).astype(np.float32)


def match(anchor_boxes: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
          foreground: float = 0.5, background: float = 0.4) -> tuple[jax.Array, jax.Array]:
  """Per anchor, its class target (class index; BACKGROUND; IGNORED between the thresholds) and
  matched box [D, 4]. gt_labels [M] is -1 for padding."""
  matches = matching.threshold_match(box_lib.iou(gt_boxes, anchor_boxes), gt_labels >= 0,
                                    background, foreground, True, require_overlap=True)
  index = jnp.maximum(matches, 0)
  target = jnp.where(matches >= 0, gt_labels[index], jnp.where(matches == -1, BACKGROUND, IGNORED))
  return target, gt_boxes[index]


def classification_loss(logits: jax.Array, target: jax.Array, alpha: float = FOCAL_ALPHA,
                        gamma: float = FOCAL_GAMMA) -> jax.Array:
  """Eq. 5 summed over the anchors that are not ignored: logits [D, C], target [D]."""
  onehot = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)  # zeros for target < 0
  focal = optax.sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=gamma)
  return jnp.sum(focal * (target != IGNORED)[:, None])


def retinanet_loss(logits: jax.Array, offsets: jax.Array, anchor_boxes: jax.Array,
                   gt_boxes: jax.Array, gt_labels: jax.Array) -> dict[str, jax.Array]:
  """One image: focal + L1 box loss, each over the number of positive anchors (at least 1)."""
  target, matched = match(anchor_boxes, gt_boxes, gt_labels)
  positive = target >= 0
  n = jnp.maximum(positive.sum(), 1)
  box_targets = box_lib.encode(matched, anchor_boxes, UNIT_VARIANCES)
  box = jnp.sum(jnp.abs(offsets - box_targets).sum(-1) * positive) / n
  cls = classification_loss(logits, target) / n
  return {'loss': cls + box, 'loss_cls': cls, 'loss_box': box, 'positives': positive.sum()}


def decode(offsets: jax.Array, anchor_boxes: jax.Array) -> jax.Array:
  return box_lib.decode(offsets, anchor_boxes, UNIT_VARIANCES, max_log_scale=box_lib.MAX_LOG_SCALE)


def detections(logits: jax.Array, offsets: jax.Array, anchor_boxes: jax.Array,
               level_anchors: Sequence[int], image_size: Sequence[int],
               pre_nms_top_k: int = 1000, score_threshold: float = 0.05,
               iou_threshold: float = 0.5, top_k: int = 100) -> jax.Array:
  """Detections [B, top_k, 6] (x0, y0, x1, y1 in pixels, score, class; score 0 for empty rows)
  from logits [B, D, C] and offsets [B, D, 4]: per level the `pre_nms_top_k` best (anchor, class)
  pairs, class-aware NMS over all of them, the `top_k` best kept."""
  h, w = image_size

  def one(lg, of):
    num_classes = lg.shape[-1]
    candidates, start = [], 0
    for n in level_anchors:
      flat = jax.nn.sigmoid(lg[start:start + n]).reshape(-1)
      scores, index = jax.lax.top_k(flat, min(pre_nms_top_k, flat.shape[0]))
      candidates.append((scores, index + start * num_classes))
      start += n
    scores = jnp.concatenate([s for s, _ in candidates])
    index = jnp.concatenate([i for _, i in candidates])
    anchor, labels = index // num_classes, index % num_classes
    found = jnp.clip(decode(of[anchor], anchor_boxes[anchor]), 0.0,
                     jnp.array([w, h, w, h], of.dtype))
    keep = box_lib.nms(found, scores, scores > score_threshold, iou_threshold, groups=labels)
    kept, pick = jax.lax.top_k(jnp.where(keep, scores, 0.0), min(top_k, scores.shape[0]))
    return jnp.concatenate([found[pick], kept[:, None], labels[pick][:, None].astype(of.dtype)], -1)

  return jax.vmap(one)(logits, offsets)


class Subnet(nn.Module):
  """The classification or box subnet (sec. 4, Figure 3 c/d): `num_convs` 3x3 convolutions with
  ReLU (`tower`), then a 3x3 predictor (`predict`); one set of weights for every level."""
  num_outputs: int
  features: int = 256
  num_convs: int = 4
  prior: float | None = None  # the classification output's bias: -log((1 - prior) / prior)

  def setup(self):
    init = nn.initializers.normal(0.01)
    self.convs = [nn.Conv(self.features, (3, 3), padding=1, kernel_init=init)
                  for _ in range(self.num_convs)]
    bias = (nn.initializers.constant(-math.log((1 - self.prior) / self.prior)) if self.prior
            else nn.initializers.zeros_init())
    self.predictor = nn.Conv(self.num_outputs, (3, 3), padding=1, kernel_init=init,
                             bias_init=bias)

  def tower(self, x: jax.Array) -> jax.Array:
    for conv in self.convs:
      x = nn.relu(conv(x))
    return x

  def predict(self, x: jax.Array) -> jax.Array:
    return self.predictor(x)


class RetinaNet(nn.Module):
  """Image [B, H, W, 3] -> {'logits' [B, D, C], 'offsets' [B, D, 4]} over `anchors()` (and the
  BVR module's keypoint outputs with `bvr`)."""
  num_classes: int = 91
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = 'bottleneck'
  features: int = 256
  first_level: int = 3  # the pyramid starts at C_first_level (stride 2^first_level)
  extra_levels: int = 2  # P6, P7
  num_convs: int = 4
  anchor_sizes: Sequence[float] = (32.0, 64.0, 128.0, 256.0, 512.0)
  anchor_scales: Sequence[float] = ANCHOR_SCALES
  anchor_ratios: Sequence[float] = ANCHOR_RATIOS
  image_size: Sequence[int] = (800, 800)  # the anchors' image
  pre_nms_top_k: int = 1000  # candidates per level at inference
  bvr: Any = None  # relationnet_pp.BVR, or None for the plain detector

  @property
  def num_anchors(self) -> int:
    return len(self.anchor_scales) * len(self.anchor_ratios)

  def levels(self) -> list[tuple[int, int, int]]:
    """(height, width, stride) of each pyramid level for `image_size`: every stride-2 step (stem,
    pool, stage, extra convolution, all padded) maps n to ceil(n / 2)."""
    last = 1 + len(self.stage_sizes) + self.extra_levels
    out = []
    for level in range(self.first_level, last + 1):
      h, w = self.image_size
      for _ in range(level):
        h, w = -(-h // 2), -(-w // 2)
      out.append((h, w, 2 ** level))
    return out

  def anchors(self) -> np.ndarray:
    return anchors(self.levels(), self.anchor_sizes, self.anchor_scales, self.anchor_ratios)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    pyramid = ResNetFPN(self.stage_sizes, self.block, self.features,
                        first_stage=self.first_level - 2, extra_convs=self.extra_levels,
                        name='backbone')(x, train)
    sizes = [p.shape[1:3] for p in pyramid]
    if sizes != [level[:2] for level in self.levels()] or len(sizes) != len(self.anchor_sizes):
      raise ValueError(f'RetinaNet maps of sizes {sizes} for this input; the anchors are for '
                       f'{self.levels()} with {len(self.anchor_sizes)} anchor sizes')
    classify = Subnet(self.num_anchors * self.num_classes, self.features, self.num_convs,
                      prior=PRIOR, name='classification_head')
    regress = Subnet(self.num_anchors * 4, self.features, self.num_convs, name='regression_head')
    cls_features = [classify.tower(p) for p in pyramid]
    reg_features = [regress.tower(p) for p in pyramid]
    extra = {}
    if self.bvr is not None:
      cls_features, reg_features, extra = self.bvr(pyramid, cls_features, reg_features,
                                                   self.levels())
    b = x.shape[0]
    logits = [classify.predict(f).reshape(b, -1, self.num_classes) for f in cls_features]
    offsets = [regress.predict(f).reshape(b, -1, 4) for f in reg_features]
    return {'logits': jnp.concatenate(logits, 1), 'offsets': jnp.concatenate(offsets, 1), **extra}

  def loss(self, outputs: dict[str, jax.Array], gt_boxes: jax.Array,
           gt_labels: jax.Array) -> dict[str, jax.Array]:
    """The batch's loss and terms: gt_boxes [B, M, 4] xyxy in pixels, gt_labels [B, M] (-1:
    padding); plus BVR's keypoint loss with `bvr`."""
    per_image = jax.vmap(functools.partial(retinanet_loss, anchor_boxes=jnp.asarray(self.anchors())))(
        outputs['logits'], outputs['offsets'], gt_boxes=gt_boxes, gt_labels=gt_labels)
    terms = {k: v.mean() for k, v in per_image.items()}
    if self.bvr is not None:
      keypoint = self.bvr.keypoint_loss(outputs, self.levels(), gt_boxes, gt_labels)
      terms = {**terms, **keypoint, 'loss': terms['loss'] + keypoint['loss_keypoint']}
    return terms

  def detections(self, outputs: dict[str, jax.Array], **kwargs) -> jax.Array:
    level_anchors = [h * w * self.num_anchors for h, w, _ in self.levels()]
    return detections(outputs['logits'], outputs['offsets'], jnp.asarray(self.anchors()),
                      level_anchors, self.image_size, self.pre_nms_top_k, **kwargs)


_PAPER = 'Focal Loss for Dense Object Detection (Lin et al. 2017, arXiv:1708.02002)'
zoo.register('retinanet_resnet50_fpn', lambda: RetinaNet(), inputs=zoo.image_input(800, 800, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=34_014_999 + 53_120,
             reference_source='torchvision retinanet_resnet50_fpn (91 classes): 34,014,999 '
                              'parameters plus the backbone BN scale/bias (53,120, '
                              'FrozenBatchNorm2d buffers there)')
SCENES = dict(num_classes=5, stage_sizes=(1, 1, 1), block='basic', features=64, first_level=2,
              extra_levels=0, anchor_sizes=(8.0, 16.0, 32.0), image_size=(64, 64), pre_nms_top_k=100)
zoo.register('retinanet_scenes', lambda: RetinaNet(**SCENES), inputs=zoo.image_input(64, 64, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=None,
             reference_source='project preset for the 64x64 scenes set')
