"""DETR's set prediction loss: "End-to-End Object Detection with Transformers" (Carion, Massa,
Synnaeve, Usunier, Kirillov, Zagoruyko 2020, arXiv:2005.12872), sec. 3.1.

The model predicts a fixed set of N (class, box) pairs; class index C (the last) is "no object"
(the empty class). Training first finds the optimal bipartite matching sigma of predictions to the
ground truth (eq. 1), with the pairwise matching cost

    L_match(y_i, yhat_sigma(i)) = -w_class p_sigma(i)(c_i) + w_L1 ||b_i - bhat||_1
                                  - w_giou GIoU(b_i, bhat)

(the probability, not its log, as the paper: "we use probabilities instead of log-probabilities";
the authors' code and Hugging Face's use w_class 1, w_L1 5, w_giou 2), by the Hungarian algorithm
(`matching.hungarian_match`). Then the Hungarian loss (eq. 2): the cross-entropy of every
prediction against its matched class, or "no object" for the unmatched ones, down-weighted by
`eos_coef` = 0.1 ("we down-weight the log-probability term when c_i = empty by a factor 10 to
account for class imbalance"); and for matched predictions the box loss (sec. 3.1 "Bounding box
loss") lambda_L1 ||b - bhat||_1 + lambda_iou (1 - GIoU), normalised by the number of objects.
Boxes are (cx, cy, w, h) relative to the image, as DETR predicts them (sigmoid outputs).
Departure: the auxiliary decoding losses (sec. 3.2) are sums of this loss over decoder layers and
belong to the model's training step, not here. The cross-entropy is averaged with the class weights
as torch's weighted `cross_entropy` (divided by the sum of the weights), as the authors' code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection.matching import hungarian_match


def matching_cost(logits: jax.Array, pred_boxes: jax.Array, gt_labels: jax.Array,
                  gt_boxes: jax.Array, w_class: float = 1.0, w_l1: float = 5.0,
                  w_giou: float = 2.0) -> jax.Array:
  """Cost [N, M] of predicting each ground-truth object (of M slots) with each of N predictions."""
  prob = jax.nn.softmax(logits, -1)
  cost_class = -prob[:, jnp.maximum(gt_labels, 0)]
  cost_l1 = jnp.abs(pred_boxes[:, None, :] - gt_boxes[None, :, :]).sum(-1)
  cost_giou = -box_lib.generalized_iou(box_lib.cxcywh_to_xyxy(pred_boxes),
                                       box_lib.cxcywh_to_xyxy(gt_boxes))
  return w_class * cost_class + w_l1 * cost_l1 + w_giou * cost_giou


def set_prediction_loss(logits: jax.Array, pred_boxes: jax.Array, gt_labels: jax.Array,
                        gt_boxes: jax.Array, eos_coef: float = 0.1, w_class: float = 1.0,
                        w_l1: float = 5.0, w_giou: float = 2.0) -> dict[str, jax.Array]:
  """Eq. 2 over a batch: logits [B, N, C + 1], pred_boxes [B, N, 4] (cxcywh), gt_labels [B, M]
  (-1 for padding), gt_boxes [B, M, 4]. Returns the total and its terms (and the matching)."""
  valid = gt_labels >= 0
  cost = jax.vmap(matching_cost, in_axes=(0, 0, 0, 0, None, None, None))(
      logits, pred_boxes, gt_labels, gt_boxes, w_class, w_l1, w_giou)
  _, matched = hungarian_match(cost, valid)  # [B, N]: target of each prediction or -1
  num_classes = logits.shape[-1] - 1
  is_matched = matched >= 0
  safe = jnp.maximum(matched, 0)
  target_class = jnp.where(is_matched, jnp.take_along_axis(gt_labels, safe, 1), num_classes)
  weights = jnp.where(target_class == num_classes, eos_coef, 1.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, target_class)
  loss_ce = jnp.sum(ce * weights) / jnp.sum(weights)
  target_boxes = jnp.take_along_axis(gt_boxes, safe[..., None], 1)
  num_boxes = jnp.maximum(valid.sum(), 1)
  l1 = jnp.abs(pred_boxes - target_boxes).sum(-1)
  giou = jax.vmap(jax.vmap(lambda a, b: box_lib.generalized_iou(a[None], b[None])[0, 0]))(
      box_lib.cxcywh_to_xyxy(pred_boxes), box_lib.cxcywh_to_xyxy(target_boxes))
  loss_l1 = jnp.sum(l1 * is_matched) / num_boxes
  loss_giou = jnp.sum((1 - giou) * is_matched) / num_boxes
  return {'loss': w_class * loss_ce + w_l1 * loss_l1 + w_giou * loss_giou, 'loss_ce': loss_ce,
          'loss_l1': loss_l1, 'loss_giou': loss_giou, 'matched': matched}
