"""The siamese convolutional network for one-shot image recognition, with the weighted L1 head.

"Siamese Neural Networks for One-shot Image Recognition" (Koch, Zemel, Salakhutdinov 2015, ICML
Deep Learning Workshop).

What follows the paper:
  * Section 3.1, figure 4: twin convolutional towers with shared weights: convolutions with ReLU
    (64@10x10, 128@7x7, 128@4x4, 256@4x4, valid padding), 2x2 max-pooling after the first three,
    then a fully connected layer of 4,096 sigmoid units, h. The head is eq. (1):
        p = sigma( sum_j alpha_j |h1_j - h2_j| + b ),
    the weighted L1 distance between the twins' features, one logistic unit (`SiameseNet.score`).
  * Section 3.2: trained on same / different pairs with the binary cross-entropy
    y log p + (1 - y) log(1 - p) (`pair_loss`) and L2 weight regularisation.
  * Section 4.3: one-shot classification: a test image is compared with one image of each of the
    N classes and takes the class of the highest p. For K shots the evaluator averages p over each
    class's K images (the paper is one-shot only; `jaxpapers.evaluators.few_shot`).

Departures: `siamese_koch` is the paper's network on 105x105 Omniglot images; `siamese_glyphs` has
the same layer pattern sized for 28x28 glyphs (64@5x5, 128@3x3, 128@2x2, 256@2x2; 1,024 sigmoid
units). Pairs come from class-structured batches (`pairs_from_batch`: per class one same pair and
one different pair, with a random class offset each step) rather than the paper's sampled pairs
with 8 affine distortions each (the glyphs are distorted when generated); Adam with weight decay
replaces SGD with momentum and per-layer learning rates and L2 weights; the paper's
Bayesian-optimised hyper-parameters and its per-layer initialisation are not used.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo


class SiameseNet(nn.Module):
  """`embed(x)` -> h; `score(h1, h2)` -> the logit of "same"; `__call__(x1, x2)` = both."""
  conv_features: Sequence[int] = (64, 128, 128, 256)
  kernel_sizes: Sequence[int] = (10, 7, 4, 4)
  hidden: int = 4096

  def setup(self):
    self.convs = [nn.Conv(f, (k, k), padding='VALID', name=f'conv_{i}')
                  for i, (f, k) in enumerate(zip(self.conv_features, self.kernel_sizes))]
    self.fc = nn.Dense(self.hidden)
    self.alpha = nn.Dense(1)  # eq. (1): alpha_j and the bias of the logistic unit

  def embed(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or normalisation.
    for i, conv in enumerate(self.convs):
      x = nn.relu(conv(x))
      if i < len(self.convs) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.sigmoid(self.fc(x.reshape(x.shape[0], -1)))

  def score(self, h1: jax.Array, h2: jax.Array) -> jax.Array:
    """Eq. (1) before the sigmoid: the logit of p(same) for each row pair, [B]."""
    return self.alpha(jnp.abs(h1 - h2))[..., 0]

  def __call__(self, x1: jax.Array, x2: jax.Array, train: bool = False) -> jax.Array:
    return self.score(self.embed(x1, train), self.embed(x2, train))


def pair_loss(logits: jax.Array, same: jax.Array) -> jax.Array:
  """Section 3.2's cross-entropy of p = sigmoid(logits) against same (1) / different (0)."""
  return optax.sigmoid_binary_cross_entropy(logits, same.astype(logits.dtype)).mean()


def pairs_from_batch(ways: int, per_class: int, key: jax.Array) -> tuple[jax.Array, jax.Array,
                                                                           jax.Array]:
  """Index pairs into a class-major batch of `ways` x `per_class` (per_class >= 2): per class, its
  examples 0 and 1 (same) and its example 0 with example 1 of the class `offset` further on
  (different; offset drawn from 1..ways-1). Returns (first, second, same), each [2 * ways]."""
  offset = jax.random.randint(key, (), 1, ways)
  classes = jnp.arange(ways)
  first = jnp.concatenate([classes, classes]) * per_class
  second = jnp.concatenate([classes, (classes + offset) % ways]) * per_class + 1
  return first, second, jnp.concatenate([jnp.ones(ways), jnp.zeros(ways)])


def _params(size: int, features: Sequence[int], kernels: Sequence[int], hidden: int) -> int:
  total, previous = 0, 1
  for i, (f, k) in enumerate(zip(features, kernels)):
    total += k * k * previous * f + f
    previous = f
    size = size - k + 1
    if i < len(features) - 1:
      size //= 2
  return total + size * size * previous * hidden + hidden + hidden + 1


_PAPER = 'Siamese Neural Networks for One-shot Image Recognition (Koch et al. 2015)'
_NETS = {'siamese_koch': (105, (64, 128, 128, 256), (10, 7, 4, 4), 4096),
         'siamese_glyphs': (28, (64, 128, 128, 256), (5, 3, 2, 2), 1024)}
for _name, (_size, _features, _kernels, _hidden) in _NETS.items():
  zoo.register(_name, lambda f=_features, k=_kernels, h=_hidden: SiameseNet(f, k, h),
               inputs=lambda s=_size: (jax.ShapeDtypeStruct((1, s, s, 1), jnp.float32),) * 2,
               apply_kwargs={'train': False}, paper=_PAPER,
               reference_params=_params(_size, _features, _kernels, _hidden),
               reference_source='closed form of the layer sizes (figure 4)')
