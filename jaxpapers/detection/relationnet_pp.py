"""RelationNet++: "RelationNet++: Bridging Visual Representations for Object Detection via
Transformer Decoder" (Chi, Wei, Hu 2020, arXiv:2010.15831): the bridging visual representations
(BVR) module on RetinaNet (`retinanet.py`).

BVR (sec. 3) enhances a detector's main representation, the *queries* (here RetinaNet's anchor
features: the outputs of its classification and box subnets' towers at every location of every
level), with other representations, the *keys* (corner and centre points), through attention:

    f'_q = f_q + sum_k S(f_q, f_k, g_q, g_k) T_v(f_k),
    S = softmax_k(S^A(f_q, f_k) + S^G(g_q, g_k))

with S^A the scaled dot product of projected query and key features, and S^G a geometry term of
the relative position g_k - g_q only, through a cosine/sine location embedding and a learned
projection; multi-head (8 heads), with an output projection. Centre keys enhance the
classification features, top-left and bottom-right corner keys the regression features (one
attention per key type, their outputs summed), then a ReLU, and the subnets' predictors read the
enhanced features.
* Keys (sec. 3, "key selection"): a point head predicts, for each key type, class heatmaps and
  sub-pixel offsets (in units of the level's stride) at every location of every level (two 3x3
  convolutions with ReLU, then 3x3 predictors; one set of weights for all levels); the k = 50
  positions of highest heatmap score (maximum over classes) over all positions of all levels are
  the keys, at their location plus offset, with the tower features at those locations.
* Geometry term: relative positions in units of the finest level's stride, embedded by sines and
  cosines of each coordinate at dim / 4 frequencies temperature^(-4 i / dim) (dim: the feature
  width, temperature 1000), a linear map to one value per head (weights N(0, 0.01)), and
  S^G = log(max(that, 1e-6)), the form of Relation Networks (Hu et al. 2018) that the authors'
  code uses.
* Keypoint losses (as CornerNet): every ground-truth corner/centre has, on every level, a peak at
  its nearest location and a Gaussian around it (sigma = (2 r + 1) / 6, r CornerNet's radius for
  an IoU of 0.7), per class; CornerNet's variant of the focal loss (eq. 1, alpha 2, beta 4) over
  the number of peaks, weight 0.25, and smooth L1 on the offsets at the peaks, weight 1 (the
  authors' RetinaNet config).
Details the abstract and the method section leave open were checked against the authors' code
(microsoft/RelationNet2: BVRHead, SimpleBVR_Transformer, PositionalEncodingSineLearned,
PointKptAssigner and the RetinaNet R-50 config); the paper's full text was not at hand offline.
Simplifications and departures: keys are the top k over all levels at once (the authors take 20 per
level, then 50 across levels); the geometry term is computed exactly for every (query, key) pair
(the paper's "shared location embedding" evaluates the embedding and its projection once on a
400 x 400 grid of relative positions and interpolates it, to save computation); every attention
has its own geometry projection (the authors share it between the two corner types); key
positions carry no gradient into the offsets (those learn from their own loss); no corner pooling
(the authors' config turns it off too) and no group norm in the point head (RetinaNet's subnets
here have none either).
`retinanet_bvr_scenes`: `retinanet_scenes` with BVR (8 heads, 50 keys).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.detection import retinanet

KEY_TYPES = ('top_left', 'bottom_right', 'centre')
CLASSIFICATION_KEYS = ('centre',)
REGRESSION_KEYS = ('top_left', 'bottom_right')
HEATMAP_WEIGHT = 0.25


def location_points(levels: Sequence[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
  """Centres [P, 2] (x, y in pixels) and strides [P] of every location, level by level."""
  points, strides = [], []
  for h, w, stride in levels:
    cy, cx = np.meshgrid((np.arange(h) + 0.5) * stride, (np.arange(w) + 0.5) * stride,
                         indexing='ij')
    points.append(np.stack([cx.ravel(), cy.ravel()], -1))
    strides.append(np.full(h * w, stride))
  return np.concatenate(points).astype(np.float32), np.concatenate(strides).astype(np.float32)


def location_embedding(delta: jax.Array, dim: int, temperature: float = 1000.0) -> jax.Array:
  """[..., dim]: for x then y, sin(d / t_i) for i < dim / 4, then cos(d / t_i); t_i =
  temperature^(4 i / dim)."""
  t = temperature ** (4.0 / dim * jnp.arange(dim // 4))
  angles = delta[..., None] / t  # [..., 2, dim / 4]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], -1).reshape(*delta.shape[:-1], dim)


def select_keys(heatmap_logits: jax.Array, k: int) -> jax.Array:
  """Indices [B, k] of the k positions of highest score (maximum over classes) of [B, P, C]."""
  return jax.lax.top_k(heatmap_logits.max(-1), k)[1]


class BridgeAttention(nn.Module):
  """One key type's attention: queries [B, Q, F] at positions [Q, 2], keys [B, K, F] at [B, K, 2]
  (positions in the same unit) -> the update [B, Q, F] to add to the queries. Sows the attention
  weights [B, heads, Q, K] as `intermediates/weights`."""
  num_heads: int = 8
  temperature: float = 1000.0

  @nn.compact
  def __call__(self, queries: jax.Array, query_positions: jax.Array, keys: jax.Array,
               key_positions: jax.Array) -> jax.Array:
    (b, q_len, f), h = queries.shape, self.num_heads
    dense = lambda name: nn.Dense(f, kernel_init=nn.initializers.xavier_uniform(), name=name)
    q = dense('query')(queries).reshape(b, q_len, h, f // h)
    k = dense('key')(keys).reshape(b, -1, h, f // h)
    v = dense('value')(keys).reshape(b, -1, h, f // h)
    appearance = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(f // h)
    delta = key_positions[:, None, :, :] - query_positions[None, :, None, :]  # [B, Q, K, 2]
    geometry = nn.Dense(h, kernel_init=nn.initializers.normal(0.01), name='geometry')(
        location_embedding(delta, f, self.temperature))
    geometry = jnp.log(jnp.maximum(geometry, 1e-6)).transpose(0, 3, 1, 2)
    weights = jax.nn.softmax(appearance + geometry, -1)
    self.sow('intermediates', 'weights', weights)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(b, q_len, f)
    return dense('out')(out)


class PointHead(nn.Module):
  """One key type's heatmap logits [..., C] and offsets [..., 2] from a feature map."""
  num_classes: int
  features: int
  num_convs: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    init = nn.initializers.normal(0.01)
    for i in range(self.num_convs):
      x = nn.relu(nn.Conv(self.features, (3, 3), padding=1, kernel_init=init, name=f'conv{i}')(x))
    prior = nn.initializers.constant(-math.log((1 - retinanet.PRIOR) / retinanet.PRIOR))
    heat = nn.Conv(self.num_classes, (3, 3), padding=1, kernel_init=init, bias_init=prior,
                   name='heatmap')(x)
    return heat, nn.Conv(2, (3, 3), padding=1, kernel_init=init, name='offset')(x)


class BVR(nn.Module):
  """(pyramid, classification and box tower features per level, levels) -> the enhanced features
  and {'keypoint_logits' [B, P, 3, C], 'keypoint_offsets' [B, P, 3, 2]} in KEY_TYPES order."""
  num_classes: int
  num_heads: int = 8
  num_keys: int = 50
  point_convs: int = 2
  temperature: float = 1000.0

  @nn.compact
  def __call__(self, pyramid: Sequence[jax.Array], cls_features: Sequence[jax.Array],
               reg_features: Sequence[jax.Array], levels: Sequence[tuple[int, int, int]]):
    b, features = pyramid[0].shape[0], pyramid[0].shape[-1]
    flat = lambda maps: jnp.concatenate([m.reshape(b, -1, m.shape[-1]) for m in maps], 1)
    heat, offset = {}, {}
    for key_type in KEY_TYPES:
      head = PointHead(self.num_classes, features, self.point_convs, name=f'{key_type}_head')
      outputs = [head(p) for p in pyramid]
      heat[key_type], offset[key_type] = flat([o[0] for o in outputs]), flat([o[1] for o in outputs])
    points, strides = map(jnp.asarray, location_points(levels))
    unit = levels[0][2]

    def bridge(maps, key_types, name):
      queries = flat(maps)
      update = 0.0
      for key_type in key_types:
        index = select_keys(heat[key_type], self.num_keys)  # [B, K]
        keys = jnp.take_along_axis(queries, index[..., None], 1)
        key_offsets = jnp.take_along_axis(offset[key_type], index[..., None], 1)
        positions = jax.lax.stop_gradient(points[index] + key_offsets * strides[index][..., None])
        update = update + BridgeAttention(self.num_heads, self.temperature,
                                          name=f'{name}_{key_type}')(
            queries, points / unit, keys, positions / unit)
      enhanced = nn.relu(queries + update)
      splits = np.cumsum([m.shape[1] * m.shape[2] for m in maps])[:-1]
      return [e.reshape(m.shape) for e, m in zip(jnp.split(enhanced, splits, 1), maps)]

    keypoints = {'keypoint_logits': jnp.stack([heat[t] for t in KEY_TYPES], 2),
                 'keypoint_offsets': jnp.stack([offset[t] for t in KEY_TYPES], 2)}
    return (bridge(cls_features, CLASSIFICATION_KEYS, 'cls'),
            bridge(reg_features, REGRESSION_KEYS, 'reg'), keypoints)

  def keypoint_loss(self, outputs: dict[str, jax.Array], levels: Sequence[tuple[int, int, int]],
                    gt_boxes: jax.Array, gt_labels: jax.Array) -> dict[str, jax.Array]:
    """The batch's keypoint loss (`keypoint_loss`), averaged over images."""
    per_image = jax.vmap(lambda lg, of, bx, lb: keypoint_loss(lg, of, bx, lb, levels))(
        outputs['keypoint_logits'], outputs['keypoint_offsets'], gt_boxes, gt_labels)
    return {k: v.mean() for k, v in per_image.items()}


def gaussian_radius(height: jax.Array, width: jax.Array, min_overlap: float = 0.7) -> jax.Array:
  """CornerNet's radius: the largest corner displacement keeping IoU >= min_overlap with the box,
  the smallest root of its three cases (both corners inside, both outside, one of each)."""
  def root(a, b, c, sign):
    return (b + sign * jnp.sqrt(jnp.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)
  r1 = root(1.0, height + width, width * height * (1 - min_overlap) / (1 + min_overlap), -1)
  r2 = root(4.0, 2 * (height + width), (1 - min_overlap) * width * height, -1)
  r3 = root(4 * min_overlap, -2 * min_overlap * (height + width),
            (min_overlap - 1) * width * height, 1)
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def keypoint_targets(gt_points: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
                     levels: Sequence[tuple[int, int, int]], num_classes: int):
  """One image, one key type: heatmap [P, C] (1 at each ground truth's nearest location on every
  level, a Gaussian around it), peaks [P] and offset targets [P, 2] (to the exact point, in
  strides) over `location_points(levels)`. gt_points [M, 2]; gt_labels [M], -1 for padding."""
  valid = gt_labels >= 0
  sigma = (2 * gaussian_radius(gt_boxes[:, 3] - gt_boxes[:, 1], gt_boxes[:, 2] - gt_boxes[:, 0])
           + 1) / 6
  classes = jax.nn.one_hot(gt_labels, num_classes) * valid[:, None]  # [M, C]
  heat, peaks, offsets, start = [], [], [], 0
  points = jnp.asarray(location_points(levels)[0])
  for h, w, stride in levels:
    level_points = points[start:start + h * w]
    start += h * w
    peak = jnp.argmin(((level_points[:, None] - gt_points[None]) ** 2).sum(-1), 0)  # [M]
    peak_points = level_points[peak]
    gauss = jnp.exp(-((level_points[:, None] - peak_points[None]) ** 2).sum(-1)
                    / (2 * sigma ** 2))  # [n, M]
    heat.append(jnp.max(gauss[:, :, None] * classes[None], axis=1))
    index = jnp.where(valid, peak, h * w)  # padding: dropped
    peaks.append(jnp.zeros(h * w, bool).at[index].set(True, mode='drop'))
    offsets.append(jnp.zeros((h * w, 2)).at[index].set((gt_points - peak_points) / stride,
                                                       mode='drop'))
  return jnp.concatenate(heat), jnp.concatenate(peaks), jnp.concatenate(offsets)


def gaussian_focal_loss(logits: jax.Array, target: jax.Array, alpha: float = 2.0,
                        beta: float = 4.0) -> jax.Array:
  """CornerNet's eq. 1 (summed, not normalised): -(1 - p)^alpha log p where the target is 1,
  -(1 - y)^beta p^alpha log(1 - p) elsewhere."""
  p = jax.nn.sigmoid(logits)
  positive = target == 1
  pos = -jax.nn.log_sigmoid(logits) * (1 - p) ** alpha
  neg = -jax.nn.log_sigmoid(-logits) * p ** alpha * (1 - target) ** beta
  return jnp.sum(jnp.where(positive, pos, neg))


def keypoint_loss(logits: jax.Array, offsets: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
                  levels: Sequence[tuple[int, int, int]]) -> dict[str, jax.Array]:
  """One image: logits [P, 3, C], offsets [P, 3, 2] (KEY_TYPES order), boxes [M, 4] in pixels."""
  x0, y0, x1, y1 = jnp.moveaxis(gt_boxes, -1, 0)
  points = {'top_left': jnp.stack([x0, y0], -1), 'bottom_right': jnp.stack([x1, y1], -1),
            'centre': jnp.stack([(x0 + x1) / 2, (y0 + y1) / 2], -1)}
  heat_loss = offset_loss = 0.0
  for i, key_type in enumerate(KEY_TYPES):
    heat, peaks, offset_targets = keypoint_targets(points[key_type], gt_boxes, gt_labels, levels,
                                                   logits.shape[-1])
    n = jnp.maximum(peaks.sum(), 1)
    heat_loss += gaussian_focal_loss(logits[:, i], heat) / n
    smooth_l1 = optax.huber_loss(offsets[:, i], offset_targets, delta=1.0).sum(-1)
    offset_loss += jnp.sum(smooth_l1 * peaks) / n
  return {'loss_keypoint': HEATMAP_WEIGHT * heat_loss + offset_loss,
          'loss_heatmap': heat_loss, 'loss_point_offset': offset_loss}


_PAPER = ('RelationNet++: Bridging Visual Representations for Object Detection via Transformer '
          'Decoder (Chi et al. 2020, arXiv:2010.15831)')
zoo.register('retinanet_bvr_scenes',
             lambda: retinanet.RetinaNet(**retinanet.SCENES, bvr=BVR(num_classes=5)),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
