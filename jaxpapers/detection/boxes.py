"""Box arithmetic the detectors share: formats, IoU, generalized IoU, and the offset encoding.

Boxes are (x0, y0, x1, y1) ("xyxy") unless named cxcywh (centre, width, height; DETR's format).
`encode` / `decode` are the parameterisation of R-CNN (Girshick et al. 2013, arXiv:1311.2524,
appendix C) used by Faster R-CNN (eq. 2) and SSD (eq. 2): for a reference (anchor / default) box
with centre (x_a, y_a) and size (w_a, h_a), t_x = (x - x_a) / w_a, t_y = (y - y_a) / h_a,
t_w = log(w / w_a), t_h = log(h / h_a); each divided by its `variances` (SSD's Caffe code and
torchvision: 0.1 for centres, 0.2 for sizes; Faster R-CNN's weights (10, 10, 5, 5) are the inverses).
`decode(encode(b, a), a) == b`; `decode(..., max_log_scale=MAX_LOG_SCALE)` clamps the size
offsets to log(1000 / 16) before exponentiating, as Faster R-CNN's code (Detectron's and
torchvision's `bbox_xform_clip`; Mask R-CNN and RetinaNet here). `generalized_iou` is eq. 1 of
Rezatofighi et al. 2019 (arXiv:1902.09630), which DETR's loss uses (sec. 3.1).

`nms` is greedy non-maximum suppression (as torchvision.ops.nms / batched_nms) with static shapes:
a keep mask instead of a list of indices; with `groups` (classes, or FPN levels for the RPN) boxes
suppress only boxes of their own group. SSD, RetinaNet, the RPN and Mask R-CNN's detections share it.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

MAX_LOG_SCALE = math.log(1000.0 / 16)  # the largest decoded size offset (bbox_xform_clip)


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
           variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
           max_log_scale: float | None = None) -> jax.Array:
  """The inverse of `encode`: xyxy boxes from offsets and anchors (size offsets, once multiplied
  by their variances, clamped to `max_log_scale` when given)."""
  t = offsets * jnp.asarray(variances, offsets.dtype)
  if max_log_scale is not None:
    t = jnp.concatenate([t[..., :2], jnp.minimum(t[..., 2:], max_log_scale)], -1)
  a = xyxy_to_cxcywh(anchors)
  centre = a[..., :2] + t[..., :2] * a[..., 2:]
  size = a[..., 2:] * jnp.exp(t[..., 2:])
  return cxcywh_to_xyxy(jnp.concatenate([centre, size], -1))


def nms(boxes: jax.Array, scores: jax.Array, valid: jax.Array, iou_threshold: float,
        groups: jax.Array | None = None) -> jax.Array:
  """Greedy non-maximum suppression: the kept mask [N] of boxes [N, 4] with scores [N].

  Visiting boxes by decreasing score, a valid box is kept unless a kept box of its group (all one
  group when `groups` is None) overlaps it by IoU > `iou_threshold`.
  """
  order = jnp.argsort(-scores)
  boxes, valid = boxes[order], valid[order]
  overlaps = iou(boxes, boxes) > iou_threshold
  if groups is not None:
    groups = groups[order]
    overlaps &= groups[:, None] == groups[None, :]

  def visit(i, keep):
    return keep.at[i].set(valid[i] & ~jnp.any(keep & overlaps[:, i]))

  keep = jax.lax.fori_loop(0, boxes.shape[0], visit, jnp.zeros(boxes.shape[0], bool))
  return jnp.zeros_like(keep).at[order].set(keep)
