"""SwAV's objective: swapped prediction of online cluster codes, the codes from Sinkhorn-Knopp.

"Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (Caron, Misra,
Mairal, Goyal, Bojanowski, Joulin 2020, arXiv:2006.09882).

What follows the paper (section 3.1 and appendix A, Algorithm 1):
  * K trainable prototypes c_k, kept on the unit sphere (normalised after every update, as the
    released code does; `normalize_prototypes`); the scores of a crop are z.C^T with z the
    normalised projection.
  * Eq. (3)-(5), codes by Sinkhorn-Knopp: Q* = Diag(u) exp(C^T Z / eps) Diag(v) is the transport
    plan whose rows (prototypes) sum to 1/K and whose columns (samples) sum to 1/B, i.e. the batch
    is split equally among the prototypes; epsilon = 0.05 and 3 iterations of alternating
    row/column normalisation (section 4.1 / appendix A). Each iteration ends with the columns
    normalised, so the returned plan's columns sum exactly to 1/B and its rows to 1/K up to the
    truncation; the final rescaling by B makes each sample's code a distribution over the K
    prototypes (sums to 1). The codes carry no gradient. The sums run over the global batch: the
    released code all-reduces them; under `jax.jit` with the batch sharded, XLA does.
  * Eq. (2), the swapped prediction: l(z_t, q_s) = -sum_k q_s^(k) log p_t^(k),
    p_t = softmax(z_t.C^T / tau) with tau = 0.1; the codes of each of the two large crops are
    predicted from every other crop.
  * Multi-crop (section 3.2): 2 large crops and V small ones; only the large crops' codes are
    computed (`swav_loss` takes scores of all crops, the first two being the large ones), and the
    loss is the mean over the two codes of the mean over the other V + 1 crops, as in the code.
  * The prototypes are frozen for the first epoch (appendix A): the experiment zeroes their
    gradient for `freeze_prototypes_steps`.
Departure: the queue of past features SwAV adds for small batches (section 4.3) is not used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

EPSILON = 0.05
SINKHORN_ITERATIONS = 3
TEMPERATURE = 0.1


def normalize_prototypes(prototypes: Array) -> Array:
  """Prototypes stored as a Dense kernel [d, K]: each column (one prototype) to unit length."""
  return prototypes / jnp.linalg.norm(prototypes, axis=0, keepdims=True)


def transport_plan(scores: Array, epsilon: float = EPSILON,
                   iterations: int = SINKHORN_ITERATIONS) -> Array:
  """Algorithm 1's Sinkhorn-Knopp on scores [B, K]; returns the plan as [B, K] (the paper's Q^T):
  each sample's row sums to 1/B exactly, each prototype's column to about 1/K."""
  scores = scores.astype(jnp.float32) / epsilon
  # Subtracting the maximum changes nothing after the first normalisation and avoids overflow.
  q = jnp.exp(scores - jnp.max(scores))
  q = q / jnp.sum(q)
  batch, k = q.shape

  def iteration(_, q):
    q = q / (k * jnp.sum(q, axis=0, keepdims=True))  # every prototype gets 1/K of the mass
    return q / (batch * jnp.sum(q, axis=1, keepdims=True))  # every sample carries 1/B

  return lax.fori_loop(0, iterations, iteration, q)


def sinkhorn_knopp(scores: Array, epsilon: float = EPSILON,
                   iterations: int = SINKHORN_ITERATIONS) -> Array:
  """The codes Q [B, K]: the transport plan rescaled by B, so each row is a distribution; no
  gradient."""
  return lax.stop_gradient(scores.shape[0] * transport_plan(lax.stop_gradient(scores), epsilon,
                                                            iterations))


def swapped_prediction(scores: Array, codes: Array, temperature: float = TEMPERATURE) -> Array:
  """Eq. (2), -sum_k q_k log softmax(scores / tau)_k, averaged over the batch."""
  log_p = jax.nn.log_softmax(scores.astype(jnp.float32) / temperature, axis=-1)
  return -jnp.mean(jnp.sum(codes * log_p, axis=-1))


def swav_loss(crop_scores: list[Array], epsilon: float = EPSILON,
              iterations: int = SINKHORN_ITERATIONS,
              temperature: float = TEMPERATURE) -> tuple[Array, Array]:
  """The multi-crop swapped-prediction loss over the scores [B, K] of each crop (the first two the
  large ones, whose codes are computed). Returns (loss, the codes of the first crop)."""
  if len(crop_scores) < 2:
    raise ValueError(f'SwAV needs at least the 2 large crops, got {len(crop_scores)}')
  total, first_codes = 0.0, None
  for i in (0, 1):
    codes = sinkhorn_knopp(crop_scores[i], epsilon, iterations)
    first_codes = codes if i == 0 else first_codes
    others = [swapped_prediction(s, codes, temperature)
              for v, s in enumerate(crop_scores) if v != i]
    total = total + sum(others) / len(others)
  return total / 2, first_codes
