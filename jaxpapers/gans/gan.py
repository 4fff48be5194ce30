"""Generative Adversarial Nets (Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville,
Bengio 2014, arXiv:1406.2661).

Section 3: D and G play the minimax game of eq. 1,

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))].

D maximises V: its loss is the binary cross-entropy of real (label 1) against generated (label 0)
images (`discriminator_loss`). G minimises `log(1 - D(G(z)))` (`minimax_generator_loss`), or, as
section 3 recommends because that term saturates early in training when D rejects samples with
confidence, maximises `log D(G(z))` (`non_saturating_generator_loss`). Every loss is written on D's
logits l with softplus: log D = log sigmoid(l) = -softplus(-l), log(1 - D) = -softplus(l), so none
overflows or takes log 0.

Networks (section 5): a multilayer-perceptron generator (ReLU hidden units; the paper's MNIST model
ends in sigmoid units) and a maxout discriminator with dropout (Goodfellow et al. 2013). The
`gan_digits_*` presets size them for the 8x8 digits (64 pixels instead of MNIST's 784).

Departures: G ends in tanh for images in [-1, 1] (the project's image_generation range) instead of
sigmoid for [0, 1]; the paper's code draws z from U[-1, 1], here N(0, I) as the other papers of the
family. Dropout on D's hidden layers only (the paper's code also drops inputs), at 0.2 rather than
0.5: D here has far fewer units and training images (1,437) than on MNIST.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo

_PAPER = 'Generative Adversarial Nets (Goodfellow et al. 2014, arXiv:1406.2661)'


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """-E[log D(x)] - E[log(1 - D(G(z)))]: minus D's value of eq. 1, from D's logits."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def minimax_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """E[log(1 - D(G(z)))], the term of eq. 1 that G minimises (saturates when D(G(z)) -> 0)."""
  return -jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_generator_loss(fake_logits: jax.Array) -> jax.Array:
  """-E[log D(G(z))]: section 3's alternative, with strong gradients early in learning."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


class Maxout(nn.Module):
  """max over `pieces` affine maps per unit (Goodfellow et al. 2013, "Maxout Networks")."""
  features: int
  pieces: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.Dense(self.features * self.pieces)(x)
    return jnp.max(h.reshape(*h.shape[:-1], self.features, self.pieces), axis=-1)


class MLPGenerator(nn.Module):
  """z [B, z_dim] -> images [B, H, W, C] in [-1, 1]."""
  image_shape: tuple[int, int, int] = (8, 8, 1)
  hidden: Sequence[int] = (256, 256)
  z_dim: int = 100

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    del train  # No normalisation or dropout.
    h = z
    for features in self.hidden:
      h = nn.relu(nn.Dense(features)(h))
    out = nn.Dense(int(np.prod(self.image_shape)))(h)
    return jnp.tanh(out).reshape(z.shape[0], *self.image_shape)


class MaxoutDiscriminator(nn.Module):
  """images [B, H, W, C] -> logits [B] of "real" (D(x) = sigmoid(logit))."""
  hidden: Sequence[int] = (128, 128)
  pieces: int = 5
  dropout: float = 0.2

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    h = images.reshape(images.shape[0], -1)
    for features in self.hidden:
      h = nn.Dropout(self.dropout, deterministic=not train)(Maxout(features, self.pieces)(h))
    return nn.Dense(1)(h)[:, 0]


def z_input(z_dim: int):
  return lambda: (jax.ShapeDtypeStruct((1, z_dim), jnp.float32),)


# Dense 100->256, 256->256, 256->64 (weights + biases).
zoo.register('gan_digits_generator', MLPGenerator, inputs=z_input(100), paper=_PAPER,
             apply_kwargs={'train': False}, reference_params=25_856 + 65_792 + 16_448,
             reference_source='closed form')
# Maxout 64->128x5, 128->128x5, Dense 128->1.
zoo.register('gan_digits_discriminator', MaxoutDiscriminator, inputs=zoo.image_input(8, 8, 1),
             paper=_PAPER, apply_kwargs={'train': False},
             reference_params=65 * 640 + 129 * 640 + 129, reference_source='closed form')
