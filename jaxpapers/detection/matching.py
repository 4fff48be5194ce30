"""Matching predictions to ground truth: optimal bipartite matching (the Hungarian algorithm, Kuhn
1955) and IoU-threshold matching of anchors / proposals.

DETR (Carion et al. 2020, arXiv:2005.12872, sec. 3.1, eq. 1) matches its N predictions to the
ground-truth objects by the permutation of lowest total matching cost, computed "efficiently with
the Hungarian algorithm". The assignment itself is `scipy.optimize.linear_sum_assignment` (as the
authors' code), run on the host through `jax.pure_callback` so that it can sit inside a jitted,
vmapped train step: only the integer assignment crosses, and no gradient flows through it (none
is defined).

`hungarian_match(cost, valid)` takes a cost [..., N, M] (N predictions, M ground-truth slots, of
which `valid` [..., M] marks the real ones; padding slots are never matched) and returns
`prediction_for_target` [..., M] (the prediction matched to each target, -1 for padding) and
`matched` [..., N] (the target index matched to each prediction, -1 for none). Requires N >= the
number of valid targets.

`threshold_match(quality, valid, low, high, allow_low_quality)` is torchvision's `Matcher`, which
Faster / Mask R-CNN (RPN anchors, RoIs) and RetinaNet (anchors) assign by: each box goes to its
ground truth of highest IoU when that IoU is >= `high`, is negative (-1) below `low` and ignored
(-2) in between; with `allow_low_quality`, every box of highest IoU with some ground truth (ties
included) keeps its best match whatever the thresholds. At IoU 0 (a ground truth that overlaps no
box) that hands every box its best match, as torchvision does; `require_overlap` restricts those
matches to IoUs above 0 (RetinaNet here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize


def _assign(cost: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  batch_shape, (n, m) = cost.shape[:-2], cost.shape[-2:]
  cost = np.asarray(cost, np.float64).reshape(-1, n, m)
  valid = np.asarray(valid, bool).reshape(-1, m)
  prediction_for_target = np.full(valid.shape, -1, np.int32)
  matched = np.full((len(cost), n), -1, np.int32)
  for i, (c, v) in enumerate(zip(cost, valid)):
    targets = np.nonzero(v)[0]
    rows, cols = optimize.linear_sum_assignment(c[:, targets])
    prediction_for_target[i, targets[cols]] = rows
    matched[i, rows] = targets[cols]
  return (prediction_for_target.reshape(*batch_shape, m), matched.reshape(*batch_shape, n))


def threshold_match(quality: jax.Array, valid: jax.Array, low: float, high: float,
                    allow_low_quality: bool, require_overlap: bool = False) -> jax.Array:
  """quality [G, N] (IoU) of ground truths (`valid` [G]) with N boxes -> [N] the matched ground
  truth, -1 below `low`, -2 in [low, high)."""
  q = jnp.where(valid[:, None], quality, -1.0)
  best, index = q.max(0), q.argmax(0)
  matches = jnp.where(best < low, -1, jnp.where(best < high, -2, index))
  if allow_low_quality:
    highest = q.max(1, keepdims=True)
    low_quality = valid[:, None] & (q == highest)
    if require_overlap:
      low_quality &= highest > 0
    matches = jnp.where(jnp.any(low_quality, axis=0), index, matches)
  return matches


def hungarian_match(cost: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  shapes = (jax.ShapeDtypeStruct(valid.shape, jnp.int32),
            jax.ShapeDtypeStruct(cost.shape[:-1], jnp.int32))
  return jax.pure_callback(_assign, shapes, jax.lax.stop_gradient(cost), valid,
                           vmap_method='broadcast_all')
