"""Box arithmetic the detectors share: formats, IoU, generalized IoU, and the offset encoding.

Boxes are (x0, y0, x1, y1) ("xyxy") unless named cxcywh (centre, width, height; DETR's format).
`encode` / `decode` are the parameterisation of R-CNN (Girshick et al. 2013, arXiv:1311.2524,
appendix C) used by Faster R-CNN (eq. 2) and SSD (eq. 2): for a reference (anchor / default) box
with centre (x_a, y_a) and size (w_a, h_a), t_x = (x - x_a) / w_a, t_y = (y - y_a) / h_a,
t_w = log(w / w_a), t_h = log(h / h_a); each divided by its `variances` (SSD's Caffe code and
torchvision: 0.1 for centres, 0.2 for sizes; Faster R-CNN's weights (10, 10, 5, 5) are the inverses).
`decode(encode(b, a), a) == b`. `class_aware_nms` is the greedy non-maximum suppression within each
class that SSD and RetinaNet read their detections out with, on a fixed number of candidates.
`generalized_iou` is eq. 1 of Rezatofighi et al. 2019
(arXiv:1902.09630), which DETR's loss uses (sec. 3.1).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def cxcywh_to_xyxy(b: jax.Array) -> jax.Array:
  cx, cy, w, h = jnp.moveaxis(b, -1, 0)
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(b: jax.Array) -> jax.Array:
  x0, y0, x1, y1 = jnp.moveaxis(b, -1, 0)
  return jnp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def area(b: jax.Array) -> jax.Array:
  return jnp.clip(b[..., 2] - b[..., 0], 0) * jnp.clip(b[..., 3] - b[..., 1], 0)


def _intersection_union(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  lo = jnp.maximum(a[:, None, :2], b[None, :, :2])
  hi = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = jnp.prod(jnp.clip(hi - lo, 0), -1)
  return inter, area(a)[:, None] + area(b)[None, :] - inter


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise IoU [N, M] of xyxy boxes a [N, 4] and b [M, 4] (0 where the union is empty)."""
  inter, union = _intersection_union(a, b)
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def generalized_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise GIoU [N, M]: IoU - |C \\ (A u B)| / |C|, C the smallest enclosing box."""
  inter, union = _intersection_union(a, b)
  lo = jnp.minimum(a[:, None, :2], b[None, :, :2])
  hi = jnp.maximum(a[:, None, 2:], b[None, :, 2:])
  enclosing = jnp.prod(jnp.clip(hi - lo, 0), -1)
  return inter / union - (enclosing - union) / enclosing


def encode(boxes: jax.Array, anchors: jax.Array,
           variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)) -> jax.Array:
  """Offsets [..., 4] of xyxy `boxes` from xyxy `anchors` (broadcast), divided by `variances`."""
  b, a = xyxy_to_cxcywh(boxes), xyxy_to_cxcywh(anchors)
  t = jnp.concatenate([(b[..., :2] - a[..., :2]) / a[..., 2:], jnp.log(b[..., 2:] / a[..., 2:])], -1)
  return t / jnp.asarray(variances, t.dtype)


def decode(offsets: jax.Array, anchors: jax.Array,
           variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)) -> jax.Array:
  """The inverse of `encode`: xyxy boxes from offsets and anchors."""
  t = offsets * jnp.asarray(variances, offsets.dtype)
  a = xyxy_to_cxcywh(anchors)
  centre = a[..., :2] + t[..., :2] * a[..., 2:]
  size = a[..., 2:] * jnp.exp(t[..., 2:])
  return cxcywh_to_xyxy(jnp.concatenate([centre, size], -1))


def class_aware_nms(boxes: jax.Array, scores: jax.Array, labels: jax.Array, iou_threshold: float,
                    score_threshold: float) -> jax.Array:
  """Which of N candidates (boxes [N, 4], scores [N] in decreasing order, labels [N]) are kept [N]:
  each one above `score_threshold` unless a kept one of its class overlaps it by > `iou_threshold`."""
  overlaps = (iou(boxes, boxes) > iou_threshold) & (labels[:, None] == labels[None, :])

  def visit(i, keep):
    return keep.at[i].set((scores[i] > score_threshold) & ~jnp.any(keep & overlaps[:, i]))

  return jax.lax.fori_loop(0, scores.shape[0], visit, jnp.zeros(scores.shape[0], bool))
