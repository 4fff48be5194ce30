"""SPP-net: "Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition" (He,
Zhang, Ren, Sun 2014, arXiv:1406.4729).

Sec. 2.2-2.3 and Figure 3: the last convolutional map, of any size a x a, is max-pooled over a
pyramid of n x n grids of spatial bins (the paper's 4-level pyramid {6x6, 3x3, 2x2, 1x1}; the 1x1
level is global pooling), and the bins of all levels are concatenated: a fixed-length vector of
C * sum(n^2) values whatever the input size, so images of any size (and, in the detector of sec.
4, any window of the map) feed the same fully connected layers.

Departure: the paper implements level n as a pooling window ceil(a/n) with stride floor(a/n),
which gives exactly n bins only for some a (a = 10, n = 6: window 2, stride 1, 9 bins); here bin
i of level n covers rows floor(i a / n) to ceil((i + 1) a / n) (torch's adaptive max pooling), n
bins for every a >= 1, and the paper's bins where its rule gives n of them with no overlap.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PAPER_LEVELS = (6, 3, 2, 1)


def _bins(size: int, n: int) -> list[tuple[int, int]]:
  return [((i * size) // n, -(-((i + 1) * size) // n)) for i in range(n)]


def adaptive_max_pool(x: jax.Array, n: int) -> jax.Array:
  """[B, H, W, C] -> [B, n, n, C]: the max over each of n x n bins (shapes are static)."""
  rows = [jnp.max(x[:, a:b], axis=1) for a, b in _bins(x.shape[1], n)]
  x = jnp.stack(rows, axis=1)  # [B, n, W, C]
  cols = [jnp.max(x[:, :, a:b], axis=2) for a, b in _bins(x.shape[2], n)]
  return jnp.stack(cols, axis=2)


def spatial_pyramid_pool(x: jax.Array, levels: Sequence[int] = PAPER_LEVELS) -> jax.Array:
  """[B, H, W, C] -> [B, C * sum(n^2)], each level's bins flattened (row-major, then channels)."""
  return jnp.concatenate([adaptive_max_pool(x, n).reshape(x.shape[0], -1) for n in levels], -1)


class SPPClassifier(nn.Module):
  """Convolutions of any input size -> SPP -> fully connected layers (the SPP-net of Figure 3)."""
  num_classes: int
  features: Sequence[int] = (32, 64)
  levels: Sequence[int] = PAPER_LEVELS
  hidden: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, f in enumerate(self.features):
      x = nn.relu(nn.Conv(f, (3, 3), padding=1, name=f'conv{i}')(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = spatial_pyramid_pool(x, self.levels)
    x = nn.relu(nn.Dense(self.hidden, name='fc')(x))
    return nn.Dense(self.num_classes, name='classifier')(x)
