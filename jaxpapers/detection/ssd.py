"""SSD: "SSD: Single Shot MultiBox Detector" (Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg 2016,
arXiv:1512.02325): default boxes, matching, hard negative mining and the MultiBox loss.

* Default boxes (sec. 2.2, "Choosing scales and aspect ratios"): on the k-th of m feature maps,
  scale s_k = s_min + (s_max - s_min)(k - 1)/(m - 1) (eq. 4; s_min 0.2, s_max 0.9), boxes of
  width s_k sqrt(a_r) and height s_k / sqrt(a_r) for each aspect ratio a_r, plus one of scale
  s'_k = sqrt(s_k s_{k+1}) for a_r = 1, centred at ((i + 0.5)/|f_k|, (j + 0.5)/|f_k|), in
  coordinates relative to the image. SSD300 (sec. 3, Table/Figure 2 and the authors' Caffe
  model) uses maps 38, 19, 10, 5, 3, 1 with {1, 2, 1/2} on the first and last two and {1, 2, 3,
  1/2, 1/3} elsewhere, conv4_3 at scale 0.1 ("we set default box with scale 0.1 on conv4_3",
  sec. 3.1) and the Caffe model's sizes 30, 60, 111, 162, 213, 264, 315 pixels of 300:
  `SSD300_SCALES`. That is 8,732 default boxes (Table 7: "number of boxes 8732").
* Matching (sec. 2.2, "Matching strategy"): each ground-truth box goes to the default box of best
  Jaccard overlap, then every default box to the ground truth it overlaps by more than 0.5.
* Loss (eq. 1-3): L = (L_conf + alpha L_loc) / N over the N matched (positive) boxes, L_loc the
  smooth L1 of the encoded offsets (`boxes.encode`, variances 0.1 / 0.2) of positives, L_conf the
  softmax cross-entropy of positives and of the hardest negatives.
* Hard negative mining (sec. 2.2): negatives are sorted by their confidence loss and the top ones
  kept so that negatives : positives is at most 3 : 1. L = 0 when N = 0 (eq. 1).
Departure: the network (VGG-16 with dilated fc6/fc7 and extra layers) is not built here yet.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers.detection import boxes as box_lib

SSD300_MAPS = (38, 19, 10, 5, 3, 1)
SSD300_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD300_SCALES = tuple(s / 300 for s in (30, 60, 111, 162, 213, 264, 315))


def paper_scales(m: int, s_min: float = 0.2, s_max: float = 0.9) -> tuple[float, ...]:
  """Eq. 4's m scales and one more (s_{m+1}, for the last map's extra box s'_m)."""
  return tuple(s_min + (s_max - s_min) * k / (m - 1) for k in range(m + 1))


def default_boxes(feature_sizes: Sequence[int], scales: Sequence[float],
                  ratios: Sequence[Sequence[float]], clip: bool = True) -> np.ndarray:
  """Default boxes [D, 4], xyxy relative to the image, in the order of the heads' outputs: map by
  map, then row, column, and per location [s_k, s'_k, then each ratio r and 1/r]."""
  out = []
  for k, size in enumerate(feature_sizes):
    s, s_next = scales[k], np.sqrt(scales[k] * scales[k + 1])
    shapes = [(s, s), (s_next, s_next)]
    for r in ratios[k]:
      shapes += [(s * np.sqrt(r), s / np.sqrt(r)), (s / np.sqrt(r), s * np.sqrt(r))]
    centres = (np.arange(size) + 0.5) / size
    cy, cx = np.meshgrid(centres, centres, indexing='ij')
    for y, x in zip(cy.ravel(), cx.ravel()):
      out += [(x - w / 2, y - h / 2, x + w / 2, y + h / 2) for w, h in shapes]
  result = np.array(out, np.float32)
  return np.clip(result, 0.0, 1.0) if clip else result


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
