"""FaceNet's triplet loss on the unit hypersphere, with online semi-hard negative mining.

"FaceNet: A Unified Embedding for Face Recognition and Clustering" (Schroff, Kalenichenko, Philbin
2015, arXiv:1503.03832).

What follows the paper:
  * Section 3: the embedding f(x) is constrained to the unit hypersphere, ||f(x)||_2 = 1 (an L2
    normalisation layer on the network's output; `EmbeddingNet`), 128-d there.
  * Section 3.1, eq. (1)-(2): for anchor a, positive p (same identity) and negative n,
        L = sum [ ||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha ]_+ ,   alpha = 0.2,
    distances squared Euclidean.
  * Section 3.2: triplets are mined online, within each mini-batch, which holds many exemplars
    of each identity (about 40 faces per identity there; `jaxpapers.data.episodes`). All
    anchor-positive pairs of the batch are used, and for each one a negative is chosen. Hardest
    negatives "can in practice lead to bad local minima early on in training ... a collapsed
    model"; so the negatives are semi-hard, eq. (4):
        ||f(a) - f(p)||^2 < ||f(a) - f(n)||^2,
    further from the anchor than the positive but still hard (within the margin, where the loss
    is not zero). `semi_hard_negatives` takes, for each pair, the nearest such negative.

Departures: where no negative of the batch is further than the positive (the paper does not say
what it does then), the pair takes its furthest negative, the one nearest to being semi-hard (as
TensorFlow Addons' `triplet_semihard_loss`); the mean over the pairs replaces the sum, so the
learning rate does not depend on the batch. The paper's networks (Zeiler&Fergus- and
Inception-style on 220x220 / 96x96 faces) become the 4-block convnet of Prototypical Networks
(`protonet.Conv4`) with a linear 64-d embedding, for the 28x28 glyphs.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.metric.protonet import Conv4, conv4_params


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def pairwise_squared_distances(x: jax.Array) -> jax.Array:
  """||x_i - x_j||^2 for every pair of rows, [B, B] (clipped at 0 against rounding)."""
  squares = jnp.sum(x * x, axis=-1)
  return jnp.maximum(squares[:, None] + squares[None, :] - 2.0 * x @ x.T, 0.0)


def semi_hard_negatives(distances: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """For every (anchor a, positive p): the negative of eq. (4) nearest to a, else a's furthest.

  Returns `negatives` [B, B] (the index n chosen for the pair (a, p)) and `pairs` [B, B], True
  where (a, p) is an anchor-positive pair (same label, a != p). Entries of other pairs are 0.
  """
  distances = jax.lax.stop_gradient(distances)
  same = labels[:, None] == labels[None, :]
  pairs = same & ~jnp.eye(len(labels), dtype=bool)
  negative = ~same  # [a, n]
  d_ap = distances[:, :, None]  # [a, p, 1]
  d_an = distances[:, None, :]  # [a, 1, n]
  semi_hard = negative[:, None, :] & (d_an > d_ap)  # [a, p, n]
  nearest = jnp.argmin(jnp.where(semi_hard, d_an, jnp.inf), axis=-1)
  furthest = jnp.argmax(jnp.where(negative, distances, -jnp.inf), axis=-1)  # [a]
  chosen = jnp.where(semi_hard.any(-1), nearest, furthest[:, None])
  return jnp.where(pairs, chosen, 0), pairs


def triplet_loss(embeddings: jax.Array, labels: jax.Array,
                 margin: float = 0.2) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. (2) over every anchor-positive pair of the batch with its semi-hard negative, averaged.

  `embeddings` [B, D] should lie on the unit sphere (`l2_normalize`). Returns (loss, metrics):
  the fraction of pairs with a semi-hard negative and of triplets with a non-zero loss.
  """
  distances = pairwise_squared_distances(embeddings)
  negatives, pairs = semi_hard_negatives(distances, labels)
  d_an = jnp.take_along_axis(distances, negatives, axis=1)  # d(a, n(a, p)) at [a, p]
  losses = jnp.maximum(distances - d_an + margin, 0.0)
  count = jnp.maximum(pairs.sum(), 1)
  loss = jnp.sum(jnp.where(pairs, losses, 0.0)) / count
  return loss, {'semi_hard_fraction': jnp.sum(pairs & (d_an > distances)) / count,
                'active_fraction': jnp.sum(pairs & (losses > 0)) / count}


class EmbeddingNet(nn.Module):
  """The encoder, a linear embedding, and the L2 normalisation onto the unit sphere (section 3)."""
  encoder: nn.Module
  features: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return l2_normalize(nn.Dense(self.features, name='embedding')(self.encoder(x, train=train)))


zoo.register('facenet_conv4', lambda: EmbeddingNet(Conv4(), features=64),
             inputs=zoo.image_input(28, 28, 1), apply_kwargs={'train': False},
             paper='FaceNet (Schroff et al. 2015, arXiv:1503.03832), on the Conv4 encoder',
             reference_params=conv4_params() + 64 * 64 + 64,
             reference_source='closed form (Conv4 + a 64-d linear embedding)')
