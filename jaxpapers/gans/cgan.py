"""Conditional Generative Adversarial Nets (Mirza & Osindero 2014, arXiv:1411.1784).

Section 3.2: both players see extra information y, here the class label: G maps (z, y) to an image
and D scores (x, y), and the minimax game of eq. 2 is that of the GAN paper conditioned on y,

    min_G max_D E_{x,y}[log D(x | y)] + E_{z,y}[log(1 - D(G(z | y) | y))],

so the losses are `jaxpapers.gans.gan`'s on the conditional logits. Section 4.1's MNIST networks:
G feeds z and the one-hot y through their own ReLU layers (200 and 1000 units), concatenates them,
then a 1200-unit ReLU layer and the image layer; D feeds x and y through their own maxout layers
(240 units x 5 pieces and 50 x 5), then a joint maxout layer (240 x 4) and a sigmoid unit, with
dropout. The `cgan_digits_*` presets keep that layout at a quarter of the widths for the 8x8 digits.

Departures (as `gan.py`): tanh output for images in [-1, 1], z ~ N(0, I), dropout 0.2 on D's hidden
layers; the paper trains with SGD and momentum, the experiment's presets use Adam.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.gans.gan import Maxout

_PAPER = 'Conditional Generative Adversarial Nets (Mirza & Osindero 2014, arXiv:1411.1784)'


class ConditionalGenerator(nn.Module):
  """(z [B, z_dim], labels [B]) -> images [B, H, W, C] in [-1, 1] of the labels' classes."""
  num_classes: int = 10
  image_shape: tuple[int, int, int] = (8, 8, 1)
  z_hidden: int = 64
  label_hidden: int = 256
  hidden: int = 320
  z_dim: int = 100

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    del train
    hz = nn.relu(nn.Dense(self.z_hidden)(z))
    hy = nn.relu(nn.Dense(self.label_hidden)(jax.nn.one_hot(labels, self.num_classes)))
    h = nn.relu(nn.Dense(self.hidden)(jnp.concatenate([hz, hy], axis=-1)))
    out = nn.Dense(int(np.prod(self.image_shape)))(h)
    return jnp.tanh(out).reshape(z.shape[0], *self.image_shape)


class ConditionalDiscriminator(nn.Module):
  """(images [B, H, W, C], labels [B]) -> logits [B] of "a real image of this class"."""
  num_classes: int = 10
  image_hidden: int = 64
  image_pieces: int = 5
  label_hidden: int = 16
  label_pieces: int = 5
  hidden: int = 64
  pieces: int = 4
  dropout: float = 0.2

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    hx = drop(Maxout(self.image_hidden, self.image_pieces)(images.reshape(images.shape[0], -1)))
    hy = drop(Maxout(self.label_hidden, self.label_pieces)(jax.nn.one_hot(labels,
                                                                          self.num_classes)))
    h = drop(Maxout(self.hidden, self.pieces)(jnp.concatenate([hx, hy], axis=-1)))
    return nn.Dense(1)(h)[:, 0]


def _conditional_inputs(*shape):
  return lambda: (jax.ShapeDtypeStruct((1, *shape), jnp.float32),
                  jax.ShapeDtypeStruct((1,), jnp.int32))


# Dense 100->64, 10->256, 320->320, 320->64.
zoo.register('cgan_digits_generator', ConditionalGenerator, inputs=_conditional_inputs(100),
             paper=_PAPER, apply_kwargs={'train': False},
             reference_params=101 * 64 + 11 * 256 + 321 * 320 + 321 * 64, reference_source='closed form')
# Maxout 64->64x5, 10->16x5, 80->64x4, Dense 64->1.
zoo.register('cgan_digits_discriminator', ConditionalDiscriminator,
             inputs=_conditional_inputs(8, 8, 1), paper=_PAPER, apply_kwargs={'train': False},
             reference_params=65 * 320 + 11 * 80 + 81 * 256 + 65, reference_source='closed form')
