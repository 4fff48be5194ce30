"""DETR: "End-to-End Object Detection with Transformers" (Carion, Massa, Synnaeve, Usunier,
Kirillov, Zagoruyko 2020, arXiv:2005.12872): the model (sec. 3.2), the set prediction loss
(sec. 3.1) and its auxiliary decoding losses.

The model (sec. 3.2, Figure 2 and the supplementary's Figure 10 / appendix A.3):
* Backbone: a ResNet (`convnets.resnet.ResNetFeatures`), its last stage C5 (stride 32, 2048
  channels for R50), reduced by a 1x1 convolution to d = 256 and flattened to HW tokens. The paper
  trains with "frozen batchnorm layers" (sec. 4): `frozen_batch_norm` runs the backbone's batch norms
  on their stored statistics in training too (their scale and bias stay parameters; see the count).
* Fixed sine positional encodings of the 2-d positions (appendix A.3, the authors'
  `PositionEmbeddingSine(normalize=True)`): d/2 channels each for y and x, the position
  (1..H) / H * 2 pi at frequencies 10000^(2 floor(i/2) / (d/2)), sin on even and cos on odd
  channels; the y half first. Added to queries and keys of every attention layer, not the values.
* Encoder: post-norm layers (self-attention, FFN), `MultiHeadAttention` of `jaxpapers.nn`.
* Decoder: N = 100 learned object queries (positional encodings of the decoder, added to its
  queries and keys at every layer), decoded in parallel from zeros: self-attention, attention over
  the encoder memory (keys memory + pos, values memory), FFN; one shared LayerNorm applied to every
  layer's output.
* Heads (sec. 3.2 "Prediction feed-forward networks"): a linear layer to C + 1 classes (the last
  "no object") and a 3-layer ReLU MLP to the normalised box (cx, cy, w, h) through a sigmoid,
  shared by all decoder layers.
* Auxiliary decoding losses (sec. 3.2 "Auxiliary decoding losses"): the heads run on every decoder
  layer's output and `detr_loss` sums the Hungarian loss over layers, each matched on its own.

`detr_resnet50` (COCO's 91 class ids, 100 queries, 6 + 6 layers, d 256, 8 heads, FFN 2048) has
41,577,888 parameters here. Hugging Face's `DetrForObjectDetection` of the same configuration
(transformers 5.18.0, ResNet-50 backbone, random weights) has 41,524,768 (`num_parameters()`;
checked 2026-12-04): the 53,120 scale and bias values of the backbone's batch norms fewer, which
are buffers of its frozen batch norms and parameters of flax's BatchNorm. The DETR repo's "number
of params" (and `facebook/detr-resnet-50`'s trainable count), 41,302,368 (the paper's 41M, Table
1), counts only parameters with `requires_grad`, leaving out the frozen conv1 and layer1 (9,408 +
212,992 = 222,400): 41,524,768 - 222,400 (arithmetic, not run here). By parts: the ResNet-50 trunk
23,508,032 (with BN affine), transformer 17,363,456, input projection 524,544, queries 25,600 and
heads 23,644 + 132,612.

Departures: no padding mask (the project's images of a batch share one size, so every pixel is
valid); the FFN reuses the Transformer's `FeedForward` (no dropout between its two layers, where the
authors' code has one); the first stages are not frozen (that is an optimiser choice for
fine-tuning from ImageNet weights, and the scenes runs train from scratch).

The loss (sec. 3.1). The model predicts a fixed set of N (class, box) pairs; class index C (the
last) is "no object" (the empty class). Training first finds the optimal bipartite matching sigma of
predictions to the ground truth (eq. 1), with the pairwise matching cost

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
The cross-entropy is averaged with the class weights as torch's weighted `cross_entropy` (divided
by the sum of the weights), as the authors' code.

`classification='focal'` is Deformable DETR's variant (Zhu et al. 2020, arXiv:2010.04159, sec. 5
"Focal Loss with loss weight of 2"; `deformable_detr.py`): C sigmoid outputs, no "no object" class,
the sigmoid focal loss (alpha 0.25, gamma 2) of every (prediction, class) against the one-hot
matched targets, summed and divided by the number of objects, and in the matching cost the
difference of the positive and negative focal terms at the target class (the authors' code).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.convnets.resnet import ResNetFeatures
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection.matching import hungarian_match
from jaxpapers.nn.attention import MultiHeadAttention
from jaxpapers.transformers.transformer import FeedForward

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


def _class_cost(logits: jax.Array, gt_labels: jax.Array, classification: str) -> jax.Array:
  labels = jnp.maximum(gt_labels, 0)
  if classification == 'softmax':
    return -jax.nn.softmax(logits, -1)[:, labels]
  if classification != 'focal':
    raise ValueError(f'classification must be "softmax" or "focal", got {classification!r}')
  p = jax.nn.sigmoid(logits)[:, labels]
  positive = FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * -jnp.log(p + 1e-8)
  negative = (1 - FOCAL_ALPHA) * p ** FOCAL_GAMMA * -jnp.log(1 - p + 1e-8)
  return positive - negative


def matching_cost(logits: jax.Array, pred_boxes: jax.Array, gt_labels: jax.Array,
                  gt_boxes: jax.Array, w_class: float = 1.0, w_l1: float = 5.0,
                  w_giou: float = 2.0, classification: str = 'softmax') -> jax.Array:
  """Cost [N, M] of predicting each ground-truth object (of M slots) with each of N predictions."""
  cost_class = _class_cost(logits, gt_labels, classification)
  cost_l1 = jnp.abs(pred_boxes[:, None, :] - gt_boxes[None, :, :]).sum(-1)
  cost_giou = -box_lib.generalized_iou(box_lib.cxcywh_to_xyxy(pred_boxes),
                                       box_lib.cxcywh_to_xyxy(gt_boxes))
  return w_class * cost_class + w_l1 * cost_l1 + w_giou * cost_giou


def set_prediction_loss(logits: jax.Array, pred_boxes: jax.Array, gt_labels: jax.Array,
                        gt_boxes: jax.Array, eos_coef: float = 0.1, w_class: float = 1.0,
                        w_l1: float = 5.0, w_giou: float = 2.0,
                        classification: str = 'softmax') -> dict[str, jax.Array]:
  """Eq. 2 over a batch: logits [B, N, C + 1] (softmax; [B, N, C] for focal), pred_boxes [B, N, 4]
  (cxcywh), gt_labels [B, M] (-1 for padding), gt_boxes [B, M, 4]. Returns the total and its terms
  (and the matching)."""
  valid = gt_labels >= 0
  cost = jax.vmap(functools.partial(matching_cost, w_class=w_class, w_l1=w_l1, w_giou=w_giou,
                                    classification=classification))(
      logits, pred_boxes, gt_labels, gt_boxes)
  _, matched = hungarian_match(cost, valid)  # [B, N]: target of each prediction or -1
  num_classes = logits.shape[-1] - (1 if classification == 'softmax' else 0)
  is_matched = matched >= 0
  safe = jnp.maximum(matched, 0)
  target_class = jnp.where(is_matched, jnp.take_along_axis(gt_labels, safe, 1), num_classes)
  num_boxes = jnp.maximum(valid.sum(), 1)
  if classification == 'softmax':
    weights = jnp.where(target_class == num_classes, eos_coef, 1.0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, target_class)
    loss_ce = jnp.sum(ce * weights) / jnp.sum(weights)
  else:  # "no object" (index C) is the all-zero target.
    targets = jax.nn.one_hot(target_class, num_classes, dtype=logits.dtype)
    focal = optax.sigmoid_focal_loss(logits, targets, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA)
    loss_ce = jnp.sum(focal) / num_boxes
  target_boxes = jnp.take_along_axis(gt_boxes, safe[..., None], 1)
  l1 = jnp.abs(pred_boxes - target_boxes).sum(-1)
  giou = jax.vmap(jax.vmap(lambda a, b: box_lib.generalized_iou(a[None], b[None])[0, 0]))(
      box_lib.cxcywh_to_xyxy(pred_boxes), box_lib.cxcywh_to_xyxy(target_boxes))
  loss_l1 = jnp.sum(l1 * is_matched) / num_boxes
  loss_giou = jnp.sum((1 - giou) * is_matched) / num_boxes
  return {'loss': w_class * loss_ce + w_l1 * loss_l1 + w_giou * loss_giou, 'loss_ce': loss_ce,
          'loss_l1': loss_l1, 'loss_giou': loss_giou, 'matched': matched}


def detr_loss(outputs: dict[str, jax.Array], gt_labels: jax.Array, gt_boxes: jax.Array,
              **loss_kwargs) -> dict[str, jax.Array]:
  """The Hungarian loss summed over decoder layers (the auxiliary losses, sec. 3.2): `outputs`
  'logits' [L, B, N, K] and 'boxes' [L, B, N, 4], each layer matched on its own. The terms
  returned are the last layer's; 'loss' is the sum over layers."""
  per_layer = jax.vmap(functools.partial(set_prediction_loss, **loss_kwargs),
                       in_axes=(0, 0, None, None))(outputs['logits'], outputs['boxes'], gt_labels,
                                                   gt_boxes)
  terms = {k: v[-1] for k, v in per_layer.items() if k != 'matched'}
  return {**terms, 'loss': per_layer['loss'].sum(), 'loss_last_layer': per_layer['loss'][-1]}


def detections(outputs: dict[str, jax.Array], image_size: Sequence[int],
               classification: str = 'softmax', top_k: int = 100) -> jax.Array:
  """The last layer's predictions as detections [B, K, 6]: (x0, y0, x1, y1) in pixels, score,
  class. Softmax: every query with its best real class (DETR's PostProcess). Focal: the `top_k`
  best (query, class) pairs by sigmoid score (Deformable DETR's PostProcess)."""
  logits, boxes = outputs['logits'][-1], outputs['boxes'][-1]
  h, w = image_size
  boxes = box_lib.cxcywh_to_xyxy(boxes) * jnp.array([w, h, w, h], boxes.dtype)
  if classification == 'softmax':
    prob = jax.nn.softmax(logits, -1)[..., :-1]
    scores, labels = prob.max(-1), prob.argmax(-1)
  else:
    num_classes = logits.shape[-1]
    flat = jax.nn.sigmoid(logits).reshape(logits.shape[0], -1)
    scores, index = jax.lax.top_k(flat, min(top_k, flat.shape[-1]))
    labels = index % num_classes
    boxes = jnp.take_along_axis(boxes, (index // num_classes)[..., None], 1)
  return jnp.concatenate([boxes, scores[..., None], labels[..., None].astype(boxes.dtype)], -1)


def sine_position_encoding(height: int, width: int, d_model: int, temperature: float = 10000.0,
                           offset: float = 0.0) -> jax.Array:
  """[H, W, d_model] fixed encodings of pixel positions (DETR's normalised PositionEmbeddingSine):
  y channels first, then x; each position (index + 1 + offset) / size * 2 pi. Deformable DETR uses
  offset -0.5 (pixel centres)."""
  half = d_model // 2
  dim_t = temperature ** (2 * (jnp.arange(half) // 2) / half)

  def encode(size):
    position = (jnp.arange(1, size + 1, dtype=jnp.float32) + offset) / (size + 1e-6) * 2 * math.pi
    angles = position[:, None] / dim_t
    return jnp.stack([jnp.sin(angles[:, 0::2]), jnp.cos(angles[:, 1::2])], -1).reshape(size, half)

  pos_y = jnp.broadcast_to(encode(height)[:, None, :], (height, width, half))
  pos_x = jnp.broadcast_to(encode(width)[None, :, :], (height, width, half))
  return jnp.concatenate([pos_y, pos_x], -1)


@dataclasses.dataclass(frozen=True)
class DETRConfig:
  """Sizes (defaults: the paper's DETR R50 on COCO's 91 class ids)."""
  num_classes: int = 91  # real classes; the class head has one more, "no object"
  num_queries: int = 100
  d_model: int = 256
  num_heads: int = 8
  d_ff: int = 2048
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  dropout_rate: float = 0.1
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = 'bottleneck'
  frozen_batch_norm: bool = True


def _attention(c, name: str) -> MultiHeadAttention:
  return MultiHeadAttention(c.num_heads, dropout_rate=c.dropout_rate,
                            kernel_init=nn.initializers.xavier_uniform(), name=name)


class EncoderLayer(nn.Module):
  """x = LN(x + SelfAttention(q = k = x + pos, v = x)); x = LN(x + FFN(x))."""
  config: DETRConfig

  @nn.compact
  def __call__(self, x: jax.Array, pos: jax.Array, *, train: bool = False) -> jax.Array:
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=not train)
    q = x + pos
    x = nn.LayerNorm(1e-5, name='norm1')(
        x + drop(_attention(c, 'self_attn')(q, q, inputs_v=x, train=train)))
    return nn.LayerNorm(1e-5, name='norm2')(x + drop(FeedForward(c.d_ff, name='ffn')(x)))


class DecoderLayer(nn.Module):
  """Self-attention of the queries, attention over the memory, FFN; post-norm residuals."""
  config: DETRConfig

  @nn.compact
  def __call__(self, y: jax.Array, query_pos: jax.Array, memory: jax.Array, pos: jax.Array, *,
               train: bool = False) -> jax.Array:
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=not train)
    q = y + query_pos
    y = nn.LayerNorm(1e-5, name='norm1')(
        y + drop(_attention(c, 'self_attn')(q, q, inputs_v=y, train=train)))
    attended = _attention(c, 'cross_attn')(y + query_pos, memory + pos, inputs_v=memory,
                                           train=train)
    y = nn.LayerNorm(1e-5, name='norm2')(y + drop(attended))
    return nn.LayerNorm(1e-5, name='norm3')(y + drop(FeedForward(c.d_ff, name='ffn')(y)))


class BoxMLP(nn.Module):
  """Sec. 3.2's box FFN: `num_layers` Dense layers, ReLU between, to 4 outputs (pre-sigmoid)."""
  hidden: int
  num_layers: int = 3
  last_init: nn.initializers.Initializer = nn.linear.default_kernel_init
  last_bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_layers - 1):
      x = nn.relu(nn.Dense(self.hidden, name=f'layers_{i}')(x))
    return nn.Dense(4, kernel_init=self.last_init, bias_init=self.last_bias_init,
                    name=f'layers_{self.num_layers - 1}')(x)


class DETR(nn.Module):
  """`model(images [B, H, W, 3]) -> {'logits': [L, B, N, C + 1], 'boxes': [L, B, N, 4]}`: every
  decoder layer's predictions (the last is the model's output), boxes normalised cxcywh."""
  config: DETRConfig = DETRConfig()

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    c = self.config
    features = ResNetFeatures(c.stage_sizes, c.block, name='backbone')(
        images, train and not c.frozen_batch_norm)[-1]
    b, h, w, _ = features.shape
    memory = nn.Conv(c.d_model, (1, 1), name='input_proj')(features).reshape(b, h * w, c.d_model)
    pos = sine_position_encoding(h, w, c.d_model).reshape(1, h * w, c.d_model)
    for i in range(c.num_encoder_layers):
      memory = EncoderLayer(c, name=f'encoder_{i}')(memory, pos, train=train)
    queries = self.param('query_embed', nn.initializers.normal(1.0), (c.num_queries, c.d_model))
    query_pos = jnp.broadcast_to(queries[None], (b, c.num_queries, c.d_model))
    y = jnp.zeros_like(query_pos)
    norm = nn.LayerNorm(1e-5, name='decoder_norm')
    hidden = []
    for i in range(c.num_decoder_layers):
      y = DecoderLayer(c, name=f'decoder_{i}')(y, query_pos, memory, pos, train=train)
      hidden.append(norm(y))
    hidden = jnp.stack(hidden)
    return {'logits': nn.Dense(c.num_classes + 1, name='class_embed')(hidden),
            'boxes': jax.nn.sigmoid(BoxMLP(c.d_model, name='bbox_embed')(hidden))}


_PAPER = 'End-to-End Object Detection with Transformers (Carion et al. 2020, arXiv:2005.12872)'
zoo.register('detr_resnet50', lambda: DETR(), inputs=zoo.image_input(800, 800, 3),
             apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=41_524_768 + 53_120,
             reference_source='Hugging Face DetrForObjectDetection num_parameters() 41,524,768, '
                              'plus the BN scale/bias (53,120, frozen-BN buffers there); the DETR '
                              'repo counts 41,302,368 trainable (see docstring)')
# The 64x64 scenes set (5 classes, at most 4 objects): ResNet-18's first two stages (C3, stride 8:
# 8x8 tokens; C5 would be 2x2), d 128, 3 + 3 layers, 20 queries, no dropout, trainable batch
# norms (trained from scratch).
DETR_SCENES = DETRConfig(num_classes=5, num_queries=20, d_model=128, num_heads=8, d_ff=512,
                         num_encoder_layers=3, num_decoder_layers=3, dropout_rate=0.0,
                         stage_sizes=(2, 2), block='basic', frozen_batch_norm=False)
zoo.register('detr_scenes', lambda: DETR(DETR_SCENES), inputs=zoo.image_input(64, 64, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=None,
             reference_source='project preset for the 64x64 scenes set')
