"""RoIAlign: "Mask R-CNN" (He, Gkioxari, Dollar, Girshick 2017, arXiv:1703.06870), sec. 3.

RoIPool quantises a region's coordinates to the feature grid twice (the box, then its bins),
misaligning features and masks; RoIAlign quantises nothing: each of the output's bins is sampled at
`sampling_ratio` x `sampling_ratio` regularly spaced points, each read by bilinear interpolation
of the four nearest feature cells, and the samples are averaged (the paper: "the result is not
sensitive to the exact sampling locations, or how many points are sampled, as long as no
quantization is performed").

Semantics are torchvision.ops.roi_align's (its tests/parity check): boxes in image coordinates
(x0, y0, x1, y1) scaled by `spatial_scale`; `aligned=True` shifts them by -0.5 pixel (the
half-pixel correction of Detectron2); with `aligned=False` (torchvision's default, the original
Mask R-CNN code) a region is at least 1x1; a sample more than one cell outside the map reads 0,
one within a cell is clamped to the border. Departure: `sampling_ratio` must be positive (the
adaptive ceil(roi_size / output_size) of sampling_ratio <= 0 makes shapes data-dependent, which
jit cannot trace; Mask R-CNN's heads use 2).

Several maps of different sizes (an FPN's levels) can be read in one call: zero-padded to a common
size and stacked along the batch, with each RoI's `spatial_scale` and `valid_size` (the height and
width of its own map, which set the border rules above) given per RoI.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _bilinear(features: jax.Array, b: jax.Array, y: jax.Array, x: jax.Array, h: jax.Array,
              w: jax.Array) -> jax.Array:
  """features [B, H, W, C] of image b at real coordinates y, x (equal shapes) -> [..., C], in a
  map of valid height h and width w (arrays broadcasting with y)."""
  outside = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
  y, x = jnp.maximum(y, 0.0), jnp.maximum(x, 0.0)
  y0, x0 = jnp.floor(y).astype(jnp.int32), jnp.floor(x).astype(jnp.int32)
  y_edge, x_edge = y0 >= h - 1, x0 >= w - 1
  y0, x0 = jnp.where(y_edge, h - 1, y0), jnp.where(x_edge, w - 1, x0)
  y, x = jnp.where(y_edge, y0.astype(y.dtype), y), jnp.where(x_edge, x0.astype(x.dtype), x)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  ly, lx = (y - y0)[..., None], (x - x0)[..., None]
  value = ((1 - ly) * (1 - lx) * features[b, y0, x0] + (1 - ly) * lx * features[b, y0, x1]
           + ly * (1 - lx) * features[b, y1, x0] + ly * lx * features[b, y1, x1])
  return jnp.where(outside[..., None], 0.0, value)


def roi_align(features: jax.Array, boxes: jax.Array, batch_index: jax.Array,
              output_size: tuple[int, int], spatial_scale: float | jax.Array = 1.0,
              sampling_ratio: int = 2, aligned: bool = False,
              valid_size: jax.Array | None = None) -> jax.Array:
  """features [B, H, W, C], boxes [K, 4] (x0, y0, x1, y1), batch_index [K] -> [K, ph, pw, C].

  `spatial_scale` is a number or one per RoI [K]; `valid_size` [K, 2] the (height, width) of the
  map each RoI reads (maps padded into `features`), by default all of it.
  """
  if sampling_ratio <= 0:
    raise ValueError(f'sampling_ratio must be positive (static shapes), got {sampling_ratio}')
  ph, pw = output_size
  offset = 0.5 if aligned else 0.0
  scaled = boxes * jnp.reshape(jnp.asarray(spatial_scale, boxes.dtype), (-1, 1)) - offset
  if valid_size is None:
    valid_size = jnp.broadcast_to(jnp.array(features.shape[1:3]), (boxes.shape[0], 2))
  h, w = (valid_size[:, i, None, None, None, None] for i in range(2))
  x0, y0, x1, y1 = (scaled[:, i] for i in range(4))
  roi_w, roi_h = x1 - x0, y1 - y0
  if not aligned:
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  bin_h, bin_w = roi_h / ph, roi_w / pw
  # Sample s of bin i sits at start + (i + (s + 0.5) / sampling_ratio) * bin.
  fractions = (jnp.arange(sampling_ratio) + 0.5) / sampling_ratio
  ys = y0[:, None, None] + (jnp.arange(ph)[None, :, None] + fractions) * bin_h[:, None, None]
  xs = x0[:, None, None] + (jnp.arange(pw)[None, :, None] + fractions) * bin_w[:, None, None]

  y = ys[:, :, None, :, None]
  x = xs[:, None, :, None, :]
  y, x = jnp.broadcast_arrays(y, x)  # [K, ph, pw, s, s]
  b = jnp.broadcast_to(batch_index[:, None, None, None, None], y.shape)
  return _bilinear(features, b, y, x, h, w).mean(axis=(3, 4))
