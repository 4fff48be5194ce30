"""MoCo's objective and moving parts: InfoNCE against a queue of keys from a momentum encoder.

"Momentum Contrast for Unsupervised Visual Representation Learning" (He, Fan, Wu, Xie, Girshick
2019, arXiv:1911.05722), v1.

What follows the paper (section 3 and Algorithm 1):
  * Eq. (1), InfoNCE: for a query q and its positive key k+ (the other view of the same image,
    encoded by the key encoder), with K queued negative keys,
        L_q = -log exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_{i=1..K} exp(q.k_i / tau)),
    q and k L2-normalised, tau = 0.07 (section 4.1); no gradient flows into the keys.
  * Section 3.2, the dictionary as a queue: the keys of every batch are enqueued and the oldest
    batch dequeued (`jaxpapers.train.buffers.Queue`, a FIFO ring kept in the state's buffers);
    `initial_queue` fills it with random unit vectors, as the released code does at the start.
  * Eq. (2), the momentum update of the key encoder: theta_k <- m theta_k + (1 - m) theta_q with
    m = 0.999 (`MOMENTUM`; Table in section 4.1.1 compares 0.99 to 0.9999). Here the key encoder is
    the query player's `ema_params` (`PlayerState.apply_gradients(..., ema_decay=m)`), updated after
    the query encoder's step, as Algorithm 1 orders them.
  * The encoder's output is a linear fc to 128-d (v1; v2 made it an MLP): `heads.MLPHead(hidden=())`.
Departure: shuffling BN (section 3.3), which keeps a batch's keys from sharing BatchNorm statistics
with its queries, is not done: under `jax.jit` the key encoder's BN uses the statistics of the
whole global batch of keys, computed in a separate call from the queries' (so the two views never
share statistics, but keys within a batch do). At this scale the effect found in the paper, a
"cheating" pretext task on multi-GPU BN, was not measured here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxpapers.selfsup.simclr import l2_normalize
from jaxpapers.train import buffers

Array = jax.Array

MOMENTUM = 0.999  # eq. (2)
TEMPERATURE = 0.07  # section 4.1


def infonce_loss(q: Array, k: Array, queue: Array, temperature: float = TEMPERATURE) -> Array:
  """Eq. (1) averaged over the batch: queries q [N, d], positive keys k [N, d], negatives
  queue [K, d]. The positive logit is column 0, as in Algorithm 1."""
  q = l2_normalize(q.astype(jnp.float32))
  k = lax.stop_gradient(l2_normalize(k.astype(jnp.float32)))
  queue = lax.stop_gradient(queue.astype(jnp.float32))  # stored normalised
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  logits = jnp.concatenate([positive, q @ queue.T], axis=1) / temperature
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(q.shape[0], jnp.int32)).mean()


def initial_queue(key: Array, size: int, dim: int) -> buffers.Queue:
  """A full queue of `size` random unit keys (the released code's start)."""
  return buffers.Queue.create(l2_normalize(jax.random.normal(key, (size, dim))))


def enqueue(queue: buffers.Queue, keys: Array) -> buffers.Queue:
  """Algorithm 1's enqueue(queue, k) and dequeue(queue): the batch's normalised keys replace the
  oldest ones."""
  queue, _ = queue.push(lax.stop_gradient(l2_normalize(keys.astype(jnp.float32))))
  return queue
