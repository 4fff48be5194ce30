"""SimSiam's objective: a predictor matches the other view's projection, with a stop-gradient on it.

"Exploring Simple Siamese Representation Learning" (Chen & He 2020, arXiv:2011.10566).

What follows the paper (section 3, Algorithm 1):
  * One network for both views: encoder f (backbone + projection MLP, three layers with BN on each,
    the output's included) and prediction MLP h (a bottleneck: Linear 2048 -> 512 -> BN -> ReLU ->
    Linear 2048), section 4.1 / `heads.MLPHead`.
  * Eq. (1), D(p, z) = -p/|p|.z/|z|, the negative cosine similarity; eq. (4), the symmetrised loss
    with the stop-gradient that prevents collapse (section 4.2):
        L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2,
    so z1, z2 receive gradient only through the predictions p1 = h(z1), p2 = h(z2) (the
    "predictor" branch), never as targets. Minimum -1.
No momentum encoder, no negatives, no large batch: that is the paper's point.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxpapers.selfsup.simclr import l2_normalize

Array = jax.Array


def negative_cosine(p: Array, z: Array) -> Array:
  """Eq. (1), D(p, stopgrad(z)), averaged over the batch."""
  p = l2_normalize(p.astype(jnp.float32))
  z = lax.stop_gradient(l2_normalize(z.astype(jnp.float32)))
  return -jnp.mean(jnp.sum(p * z, axis=-1))


def simsiam_loss(p1: Array, p2: Array, z1: Array, z2: Array) -> Array:
  """Eq. (4): D(p1, z2) / 2 + D(p2, z1) / 2 with the stop-gradient on z."""
  return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
