"""Prototypical Networks: a class is the mean of its support embeddings; queries are classified by
a softmax over negative squared Euclidean distances to the prototypes.

"Prototypical Networks for Few-shot Learning" (Snell, Swersky, Zemel 2017, arXiv:1703.05175).

What follows the paper:
  * Section 2.2, eq. (1): the prototype of class k is c_k = (1 / |S_k|) sum_{x in S_k} f(x).
  * Eq. (2): p(y = k | x) = softmax_k(-d(f(x), c_k)), with d the squared Euclidean distance
    (section 2.7: it makes the classifier a linear model and works better than cosine).
  * Algorithm 1: episodic training. An episode draws N_c classes, N_S support and N_Q query
    examples of each; the loss is the mean negative log-probability of the queries' classes
    (`prototypical_loss`). Episodes come from `jaxpapers.data.episodes.ClassBatches` (N_c classes x
    (N_S + N_Q) examples, class-major; the first N_S of each class are its support).
  * Section 3.1: the embedding is four blocks of a 64-filter 3x3 convolution, batch
    normalisation, ReLU and 2x2 max-pooling (`Conv4`; on 28x28 inputs, a 64-d output); Adam, a
    learning rate of 1e-3 halved every 2,000 episodes; 60 classes and 5 queries per training
    episode on Omniglot, the shots of training matching those of testing.

Departures: the glyphs of `jaxpapers.data.font_glyphs` replace Omniglot, without the extra classes
made by rotating characters by multiples of 90 degrees (the symbol alphabets hold characters that
are rotations of one another, such as arrows); training episodes are smaller and fewer (see
`experiments/configs/metric.py`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.nn.batch_norm import BatchNorm


class Conv4(nn.Module):
  """Four conv(3x3, 64) -> BatchNorm -> ReLU -> max-pool(2) blocks, flattened (section 3.1)."""
  features: int = 64
  blocks: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i in range(self.blocks):
      x = nn.Conv(self.features, (3, 3), name=f'conv_{i}')(x)
      x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f'bn_{i}')(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    return x.reshape(x.shape[0], -1)


def conv4_params(features: int = 64, blocks: int = 4, channels: int = 1) -> int:
  """Each block: a 3x3 kernel with bias, BN's scale and shift."""
  total, previous = 0, channels
  for _ in range(blocks):
    total += 9 * previous * features + features + 2 * features
    previous = features
  return total


def prototypes(support: jax.Array) -> jax.Array:
  """Eq. (1): [N, K, D] support embeddings -> [N, D] class means."""
  return support.mean(axis=1)


def squared_distances(queries: jax.Array, centres: jax.Array) -> jax.Array:
  """||q_i - c_k||^2, [Q, N]."""
  return jnp.sum((queries[:, None, :] - centres[None, :, :]) ** 2, axis=-1)


def prototypical_loss(support: jax.Array, query: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Algorithm 1's loss and the query accuracy: `support` [N, K, D], `query` [N, Q, D], the
  queries of row k belonging to class k."""
  n, q = query.shape[:2]
  logits = -squared_distances(query.reshape(n * q, -1), prototypes(support))  # eq. (2)
  labels = jnp.repeat(jnp.arange(n), q)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, jnp.mean(jnp.argmax(logits, -1) == labels)


zoo.register('protonet_conv4', Conv4, inputs=zoo.image_input(28, 28, 1),
             apply_kwargs={'train': False},
             paper='Prototypical Networks for Few-shot Learning (Snell et al. 2017, arXiv:1703.05175)',
             reference_params=conv4_params(),
             reference_source='closed form (4 x (3x3 conv with bias + BN), section 3.1)')
