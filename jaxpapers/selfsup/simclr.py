"""SimCLR's objective: NT-Xent, the normalised temperature-scaled cross-entropy over a global batch.

"A Simple Framework for Contrastive Learning of Visual Representations" (Chen, Kornblith, Norouzi,
Hinton 2020, arXiv:2002.05709).

What follows the paper:
  * Section 2.1, eq. (1): for a batch of N examples, two augmented views each give 2N projections
    z; with sim(u, v) = u.v / (|u| |v|) the loss of the positive pair (i, j) is
        l(i, j) = -log exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau),
    every other one of the 2N - 2 views in the batch being a negative, and the loss is the mean of
    l over all 2N ordered positive pairs, (2k-1, 2k) and (2k, 2k-1) (Algorithm 1).
  * Section 5.1 / appendix B.9: the batch is the *global* batch: SimCLR gathers the projections of
    every TPU core so each example's negatives come from all of them (its "global BN" is the same
    idea for the statistics). `nt_xent_loss_per_device` is that gather in per-device code, the
    pattern of `jaxpapers.contrastive.clip.clip_loss_per_device`: every device all-gathers both
    views over the data axis and scores its own 2n rows against the 2N gathered projections;
    `sharded_nt_xent_loss` wraps it in `jax.shard_map`. Under plain `jax.jit` with the batch
    sharded, `nt_xent_loss` of the global arrays is the same number (XLA forms the global matrix).
  * The temperature is a fixed hyper-parameter (0.1 for ImageNet with large batches, 0.5 in the
    CIFAR-10 runs of appendix B.9); the config says which.
The projection head g (an MLP on the pooled encoder output, section 2.1) is `heads.MLPHead`; the
representation kept for downstream tasks is h, before g.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

Array = jax.Array


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def _row_losses(rows: Array, columns: Array, row_index: Array, positive_index: Array,
                temperature: float) -> Array:
  """-log softmax at the positive of each row, the row's own column removed from the softmax."""
  logits = rows @ columns.T / temperature
  self_mask = jnp.arange(columns.shape[0])[None, :] == row_index[:, None]
  logits = jnp.where(self_mask, -jnp.inf, logits)
  return optax.softmax_cross_entropy_with_integer_labels(logits, positive_index)


def nt_xent_loss(z1: Array, z2: Array, temperature: float) -> Array:
  """Eq. (1) averaged over the 2N positive pairs of views z1 [N, d], z2 [N, d] (row i of each is
  the same example). Rows are the 2N views in the order [z1; z2]: view i's positive is i +- N."""
  z = l2_normalize(jnp.concatenate([z1, z2]).astype(jnp.float32))
  n = z1.shape[0]
  index = jnp.arange(2 * n)
  return _row_losses(z, z, index, (index + n) % (2 * n), temperature).mean()


def nt_xent_loss_per_device(z1: Array, z2: Array, temperature: float,
                            axis_name: str = 'data') -> Array:
  """`nt_xent_loss` of the global batch, called in per-device code with this device's rows.

  Both views are gathered over `axis_name`; this device's n rows of each view are scored against
  all 2N views ([2n, 2N] logits, not the whole [2N, 2N] matrix), the per-row losses summed over
  devices and divided by 2N. Every device returns the global loss; gradients flow back through
  the gather to every device's rows.
  """
  z1 = l2_normalize(z1.astype(jnp.float32))
  z2 = l2_normalize(z2.astype(jnp.float32))
  all_z = jnp.concatenate([lax.all_gather(z1, axis_name, tiled=True),
                           lax.all_gather(z2, axis_name, tiled=True)])
  local, total = z1.shape[0], all_z.shape[0] // 2  # n rows here, N in the global batch
  rows = lax.axis_index(axis_name) * local + jnp.arange(local)  # global indices of this shard
  index = jnp.concatenate([rows, rows + total])  # in the order [z1; z2] of `nt_xent_loss`
  losses = _row_losses(jnp.concatenate([z1, z2]), all_z, index, (index + total) % (2 * total),
                       temperature)
  return lax.psum(losses.sum(), axis_name) / (2 * total)


def sharded_nt_xent_loss(mesh: Mesh, temperature: float, axis_name: str = 'data'):
  """`nt_xent_loss_per_device` under `jax.shard_map`: (z1, z2) split over `axis_name` -> the
  global-batch loss; usable inside `jax.jit` (a train step), gradients included."""
  return jax.shard_map(functools.partial(nt_xent_loss_per_device, temperature=temperature,
                                         axis_name=axis_name),
                       mesh=mesh, in_specs=(P(axis_name), P(axis_name)), out_specs=P(),
                       check_vma=False)
