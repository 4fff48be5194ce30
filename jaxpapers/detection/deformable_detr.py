"""Deformable DETR: "Deformable DETR: Deformable Transformers for End-to-End Object Detection" (Zhu,
Su, Lu, Li, Wang, Dai 2020, arXiv:2010.04159), single-stage, without iterative box refinement.

* Multi-scale deformable attention (sec. 4.1, eq. 3): for query z_q with normalised reference point
  p_q and multi-scale inputs {x^l} (L levels),

      MSDeformAttn(z_q, p_q, {x^l}) = sum_m W_m [ sum_l sum_k A_mlqk W'_m x^l(phi_l(p_q) + dp_mlqk) ]

  M heads, K sampling points per head and level; the offsets dp_mlqk and the weights A_mlqk are
  linear projections of the query (3 M L K channels; the weights softmax-normalised over the L K
  points of a head); x^l(p) is bilinear interpolation of level l at p. Offsets are in pixels of
  each level, so locations are p_q + dp / (W_l, H_l) in normalised coordinates; the sampling is
  torch's `grid_sample(align_corners=False, padding_mode='zeros')` (the authors' CUDA kernel and
  their pytorch reference `ms_deform_attn_core_pytorch`): pixel coordinate p * size - 0.5, zero
  outside the map. `bilinear_sample` gathers the four neighbours of every location at once and
  `ms_deform_attn` loops only over the (few, differently shaped) levels, never over queries.
  Initialisation as the authors' code: offsets' weights zero and biases pointing, per head, in one
  of M directions around the circle at distances 1..K; attention weights zero (uniform); value and
  output projections Xavier-uniform.
* Multi-scale feature maps (sec. 4.1 "Multi-scale Feature Maps", Figure 4 of the appendix): ResNet
  stages C3..C5 (strides 8..32) each through a 1x1 convolution to d = 256 channels and GroupNorm
  (32 groups), and one more level by a 3x3 stride-2 convolution (+ GroupNorm) on C5: L = 4 levels.
  A learned level embedding e_l is added to the sine positional encoding of each level ("scale-level
  embedding"), which here uses DETR's `sine_position_encoding` with the authors' -0.5 offset.
* Encoder (sec. 4.1 "Deformable Transformer Encoder"): post-norm layers of multi-scale deformable
  self-attention (the reference point of each pixel is itself, at every level) and an FFN (1024).
* Decoder (sec. 4.1 "Deformable Transformer Decoder"): self-attention among the queries (ordinary
  multi-head attention), deformable cross-attention to the encoder memory, FFN. Each of the N = 300
  queries has a learned positional embedding and a learned content embedding (the split halves of
  one 2d-wide embedding); its 2-d reference point is a linear projection of the positional
  embedding through a sigmoid. The box head predicts offsets from the reference point:
  b = sigmoid(MLP(h) + (inverse_sigmoid(p_q), 0, 0)) (appendix A.3), shared by all layers.
* Training (sec. 5 "Implementation Details"): focal loss (weight 2) for classification, 300
  queries, the Hungarian matching and box losses of DETR with auxiliary losses on every decoder
  layer (`detr.detr_loss` with `classification='focal'`, `w_class=2`). The class head's bias starts
  at -log((1 - 0.01) / 0.01) (focal-loss prior); the box MLP's last layer at zero weight and bias
  (0, 0, -2, -2), as the authors' code.

`deformable_detr_resnet50` (91 COCO class ids, 300 queries, 4 levels, 4 points, 8 heads, d 256, FFN
1024, 6 + 6 layers) has 40,122,785 parameters here. The count from layer sizes: the ResNet-50 trunk
23,508,032 (with BN affine), input projections 5,639,168, level embeddings 1,024, encoder
4,541,184, decoder 6,123,264, queries 153,600, reference-point projection 514, heads 23,387 +
132,612. Hugging Face's `DeformableDetrForObjectDetection` (its default config, the paper's
Deformable DETR, with 91 labels and a ResNet-50 backbone; transformers 5.18.0, checked 2026-12-04)
has 40,069,665 (`num_parameters()`), the 53,120 BN scale and bias values fewer (buffers of its
frozen batch norms); the paper's Table 1 gives 40M. Not here: two-stage Deformable DETR and
iterative box refinement (both off in the paper's base model), padding masks (images of a batch
share one size, so the valid ratios are 1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.convnets.resnet import ResNetFeatures
from jaxpapers.detection.detr import BoxMLP, sine_position_encoding
from jaxpapers.nn.attention import MultiHeadAttention
from jaxpapers.nn.group_norm import GroupNorm
from jaxpapers.transformers.transformer import FeedForward

Shapes = Sequence[tuple[int, int]]


def bilinear_sample(value: jax.Array, locations: jax.Array) -> jax.Array:
  """value [B, H, W, C] at locations [B, K, 2] (normalised (x, y), 0..1 spanning the map's edges)
  -> [B, K, C]: torch's grid_sample(align_corners=False, zeros padding) in grid coordinates
  2 p - 1. Neighbours outside the map count as zero."""
  b, h, w, c = value.shape
  x = locations[..., 0] * w - 0.5
  y = locations[..., 1] * h - 0.5
  x0, y0 = jnp.floor(x), jnp.floor(y)
  flat = value.reshape(b, h * w, c)
  out = jnp.zeros(locations.shape[:2] + (c,), value.dtype)
  for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
    weight = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
    inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
    index = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
    gathered = jnp.take_along_axis(flat, index[..., None], axis=1)
    out = out + gathered * jnp.where(inside, weight, 0.0)[..., None]
  return out


def ms_deform_attn(value: jax.Array, shapes: Shapes, locations: jax.Array,
                   weights: jax.Array) -> jax.Array:
  """Eq. 3's inner sums. value [B, S, M, D] (S = sum_l H_l W_l, levels concatenated in order),
  locations [B, Q, M, L, K, 2] normalised (x, y), weights [B, Q, M, L, K] -> [B, Q, M * D]."""
  b, _, m, d = value.shape
  q, k = locations.shape[1], locations.shape[4]
  out, start = 0.0, 0
  for level, (h, w) in enumerate(shapes):
    v = value[:, start:start + h * w].transpose(0, 2, 1, 3).reshape(b * m, h, w, d)
    loc = locations[:, :, :, level].transpose(0, 2, 1, 3, 4).reshape(b * m, q * k, 2)
    sampled = bilinear_sample(v, loc).reshape(b, m, q, k, d)
    out = out + jnp.einsum('bmqkd,bqmk->bqmd', sampled, weights[:, :, :, level])
    start += h * w
  return out.reshape(b, q, m * d)


def _offset_bias_init(num_heads: int, num_levels: int, num_points: int):
  """The authors' initial offsets: head m points along angle 2 pi m / M (scaled so the larger
  coordinate is 1), its k-th point at distance k + 1, the same at every level."""

  def init(key, shape, dtype=jnp.float32):
    del key
    theta = np.arange(num_heads) * 2 * math.pi / num_heads
    grid = np.stack([np.cos(theta), np.sin(theta)], -1)
    grid = grid / np.abs(grid).max(-1, keepdims=True)
    grid = np.tile(grid[:, None, None, :], (1, num_levels, num_points, 1))
    grid = grid * np.arange(1, num_points + 1)[None, None, :, None]
    return jnp.asarray(grid.reshape(shape), dtype)

  return init


class MSDeformAttn(nn.Module):
  """Multi-scale deformable attention (eq. 3): query [B, Q, d], reference points [B, Q, L, 2]
  (normalised (x, y), per level), inputs [B, S, d] of the levels `shapes` -> [B, Q, d]."""
  d_model: int = 256
  num_heads: int = 8
  num_levels: int = 4
  num_points: int = 4

  @nn.compact
  def __call__(self, query: jax.Array, reference_points: jax.Array, inputs: jax.Array,
               shapes: Shapes) -> jax.Array:
    m, lv, k = self.num_heads, self.num_levels, self.num_points
    b, q, _ = query.shape
    xavier = nn.initializers.xavier_uniform()
    value = nn.Dense(self.d_model, kernel_init=xavier, name='value_proj')(inputs)
    value = value.reshape(b, inputs.shape[1], m, self.d_model // m)
    offsets = nn.Dense(m * lv * k * 2, kernel_init=nn.initializers.zeros_init(),
                       bias_init=_offset_bias_init(m, lv, k), name='sampling_offsets')(query)
    offsets = offsets.reshape(b, q, m, lv, k, 2)
    weights = nn.Dense(m * lv * k, kernel_init=nn.initializers.zeros_init(),
                       name='attention_weights')(query)
    weights = jax.nn.softmax(weights.reshape(b, q, m, lv * k), -1).reshape(b, q, m, lv, k)
    normaliser = jnp.array([[w, h] for h, w in shapes], query.dtype)  # offsets are in pixels
    locations = (reference_points[:, :, None, :, None, :]
                 + offsets / normaliser[None, None, None, :, None, :])
    out = ms_deform_attn(value, shapes, locations, weights)
    return nn.Dense(self.d_model, kernel_init=xavier, name='output_proj')(out)


@dataclasses.dataclass(frozen=True)
class DeformableDETRConfig:
  """Sizes (defaults: the paper's Deformable DETR R50, COCO's 91 class ids)."""
  num_classes: int = 91
  num_queries: int = 300
  d_model: int = 256
  num_heads: int = 8
  d_ff: int = 1024
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  dropout_rate: float = 0.1
  num_feature_levels: int = 4
  num_points: int = 4
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = 'bottleneck'
  backbone_levels: int = 3  # the last stages used (C3..C5); the other levels are extra convs
  group_norm_groups: int = 32
  frozen_batch_norm: bool = True


def _deform_attention(c: DeformableDETRConfig, name: str) -> MSDeformAttn:
  return MSDeformAttn(c.d_model, c.num_heads, c.num_feature_levels, c.num_points, name=name)


class EncoderLayer(nn.Module):
  config: DeformableDETRConfig

  @nn.compact
  def __call__(self, x, pos, reference_points, shapes, *, train: bool = False):
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=not train)
    attended = _deform_attention(c, 'self_attn')(x + pos, reference_points, x, shapes)
    x = nn.LayerNorm(1e-5, name='norm1')(x + drop(attended))
    return nn.LayerNorm(1e-5, name='norm2')(x + drop(FeedForward(c.d_ff, name='ffn')(x)))


class DecoderLayer(nn.Module):
  config: DeformableDETRConfig

  @nn.compact
  def __call__(self, y, query_pos, reference_points, memory, shapes, *, train: bool = False):
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=not train)
    q = y + query_pos
    attended = MultiHeadAttention(c.num_heads, dropout_rate=c.dropout_rate,
                                  kernel_init=nn.initializers.xavier_uniform(),
                                  name='self_attn')(q, q, inputs_v=y, train=train)
    y = nn.LayerNorm(1e-5, name='norm1')(y + drop(attended))
    attended = _deform_attention(c, 'cross_attn')(y + query_pos, reference_points, memory, shapes)
    y = nn.LayerNorm(1e-5, name='norm2')(y + drop(attended))
    return nn.LayerNorm(1e-5, name='norm3')(y + drop(FeedForward(c.d_ff, name='ffn')(y)))


def encoder_reference_points(shapes: Shapes, num_levels: int) -> jax.Array:
  """[S, L, 2]: every pixel's centre (x, y), normalised, as its reference point at every level."""
  points = []
  for h, w in shapes:
    y, x = jnp.meshgrid((jnp.arange(h) + 0.5) / h, (jnp.arange(w) + 0.5) / w, indexing='ij')
    points.append(jnp.stack([x.ravel(), y.ravel()], -1))
  return jnp.broadcast_to(jnp.concatenate(points)[:, None], (sum(h * w for h, w in shapes),
                                                             num_levels, 2))


def inverse_sigmoid(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  x = jnp.clip(x, 0, 1)
  return jnp.log(jnp.clip(x, eps) / jnp.clip(1 - x, eps))


def _box_bias_init(key, shape, dtype=jnp.float32):
  del key
  return jnp.array([0.0, 0.0, -2.0, -2.0], dtype).reshape(shape)


class DeformableDETR(nn.Module):
  """`model(images) -> {'logits': [L, B, N, C], 'boxes': [L, B, N, 4]}` (sigmoid classes, boxes
  normalised cxcywh), every decoder layer's predictions, the last being the model's output."""
  config: DeformableDETRConfig = DeformableDETRConfig()

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    c = self.config
    stages = ResNetFeatures(c.stage_sizes, c.block, name='backbone')(
        images, train and not c.frozen_batch_norm)
    levels = []
    for i, feature in enumerate(stages[-c.backbone_levels:]):
      x = nn.Conv(c.d_model, (1, 1), name=f'input_proj_{i}_conv')(feature)
      levels.append(GroupNorm(c.group_norm_groups, name=f'input_proj_{i}_norm')(x))
    x = stages[-1]
    for i in range(c.backbone_levels, c.num_feature_levels):
      x = nn.Conv(c.d_model, (3, 3), strides=2, padding=1, name=f'input_proj_{i}_conv')(x)
      x = GroupNorm(c.group_norm_groups, name=f'input_proj_{i}_norm')(x)
      levels.append(x)
    shapes = tuple(level.shape[1:3] for level in levels)
    b = images.shape[0]
    level_embed = self.param('level_embed', nn.initializers.normal(1.0),
                             (c.num_feature_levels, c.d_model))
    memory = jnp.concatenate([level.reshape(b, -1, c.d_model) for level in levels], 1)
    pos = jnp.concatenate([
        sine_position_encoding(h, w, c.d_model, offset=-0.5).reshape(h * w, c.d_model)
        + level_embed[i] for i, (h, w) in enumerate(shapes)])[None]
    reference = encoder_reference_points(shapes, c.num_feature_levels)[None]
    for i in range(c.num_encoder_layers):
      memory = EncoderLayer(c, name=f'encoder_{i}')(memory, pos, reference, shapes, train=train)

    queries = self.param('query_embed', nn.initializers.normal(1.0),
                         (c.num_queries, 2 * c.d_model))
    query_pos, y = (jnp.broadcast_to(half[None], (b, c.num_queries, c.d_model))
                    for half in jnp.split(queries, 2, -1))
    reference = jax.nn.sigmoid(nn.Dense(2, kernel_init=nn.initializers.xavier_uniform(),
                                        name='reference_points')(query_pos))  # [B, N, 2]
    reference_levels = jnp.broadcast_to(reference[:, :, None],
                                        (b, c.num_queries, c.num_feature_levels, 2))
    hidden = []
    for i in range(c.num_decoder_layers):
      y = DecoderLayer(c, name=f'decoder_{i}')(y, query_pos, reference_levels, memory, shapes,
                                               train=train)
      hidden.append(y)
    hidden = jnp.stack(hidden)
    prior = -math.log((1 - 0.01) / 0.01)
    logits = nn.Dense(c.num_classes, bias_init=nn.initializers.constant(prior),
                      name='class_embed')(hidden)
    box = BoxMLP(c.d_model, last_init=nn.initializers.zeros_init(), last_bias_init=_box_bias_init,
                 name='bbox_embed')(hidden)
    box = box.at[..., :2].add(inverse_sigmoid(reference))
    return {'logits': logits, 'boxes': jax.nn.sigmoid(box)}


_PAPER = ('Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al. '
          '2020, arXiv:2010.04159)')
zoo.register('deformable_detr_resnet50', lambda: DeformableDETR(),
             inputs=zoo.image_input(800, 800, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=40_069_665 + 53_120,
             reference_source='Hugging Face DeformableDetrForObjectDetection (default config) '
                              'num_parameters() 40,069,665, plus the BN scale/bias (53,120, '
                              'frozen-BN buffers there); the paper\'s Table 1: 40M')
# The 64x64 scenes set: ResNet-18's first three stages, levels C3 (8x8) and C4 (4x4) plus one
# extra (2x2), d 128, 3 + 3 layers, 30 queries, no dropout, trainable batch norms.
DEFORMABLE_DETR_SCENES = DeformableDETRConfig(
    num_classes=5, num_queries=30, d_model=128, num_heads=8, d_ff=512, num_encoder_layers=3,
    num_decoder_layers=3, dropout_rate=0.0, num_feature_levels=3, num_points=4,
    stage_sizes=(2, 2, 2), block='basic', backbone_levels=2, frozen_batch_norm=False)
zoo.register('deformable_detr_scenes', lambda: DeformableDETR(DEFORMABLE_DETR_SCENES),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
