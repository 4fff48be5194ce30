"""Barlow Twins' objective: the cross-correlation of two views' embeddings pushed to the identity.

"Barlow Twins: Self-Supervised Learning via Redundancy Reduction" (Zbontar, Jing, Misra, LeCun,
Deny 2021, arXiv:2103.03230).

What follows the paper (section 2, Algorithm 1):
  * Eq. (2): C_ij = sum_b z^A_bi z^B_bj / (sqrt(sum_b (z^A_bi)^2) sqrt(sum_b (z^B_bj)^2)), the
    cross-correlation along the batch of the two views' embeddings, each mean-centred along the
    batch: here each embedding is standardised along the batch (mean 0, biased std 1, as the
    released code's affine-free BatchNorm1d) and C = z_A^T z_B / N (`cross_correlation`).
  * Eq. (1): L = sum_i (1 - C_ii)^2 + lambda sum_i sum_{j != i} C_ij^2, the invariance term and the
    redundancy-reduction term; lambda = 5e-3 (section 4, for the paper's 8192-d projector: the
    off-diagonal term grows as d^2, so lambda goes with the width; the experiments' config says
    what width and lambda it uses).
  * The projector: three layers of 8192 (Linear -> BN -> ReLU twice, then Linear), `heads.MLPHead`.
The statistics are those of the global batch: the released code all-reduces C; under `jax.jit`
with the batch sharded XLA does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

LAMBDA = 5e-3  # section 4, with an 8192-d projector


def standardize(z: Array, eps: float = 1e-5) -> Array:
  """Mean 0 and (biased) standard deviation 1 along the batch, per dimension."""
  z = z.astype(jnp.float32)
  mean = jnp.mean(z, axis=0, keepdims=True)
  return (z - mean) / jnp.sqrt(jnp.var(z, axis=0, keepdims=True) + eps)


def cross_correlation(z_a: Array, z_b: Array) -> Array:
  """Eq. (2): C [d, d] of the batch-standardised embeddings z_a, z_b [N, d]."""
  return standardize(z_a).T @ standardize(z_b) / z_a.shape[0]


def barlow_twins_loss(z_a: Array, z_b: Array, lambd: float = LAMBDA) -> Array:
  """Eq. (1): sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2."""
  c = cross_correlation(z_a, z_b)
  diagonal = jnp.diagonal(c)
  off_diagonal = jnp.sum(c ** 2) - jnp.sum(diagonal ** 2)
  return jnp.sum((1.0 - diagonal) ** 2) + lambd * off_diagonal
