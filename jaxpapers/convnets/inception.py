"""Inception-v4 and Inception-ResNet-v2: "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning" (Szegedy, Ioffe, Vanhoucke, Alemi 2016, arXiv:1602.07261).

Layouts are those of the released TF-slim models as ported by timm (`inception_v4`,
`inception_resnet_v2`), the de-facto reference; module names follow timm's state dict. Every
convolution is `layers.ConvBN` (no bias, batch norm with eps 1e-3 and both scale and bias, ReLU),
except the linear 1x1 convolutions that close each residual branch, which have a bias and no batch
norm (sec. 3.2: batch norm only on top of the traditional layers, not on the summations).

Inception-v4 (sec. 3.1, Figures 3-9, Table 1 with k, l, m, n = 192, 224, 256, 384): the stem of
Figure 3 (35x35x384 on a 299x299 input), 4x Inception-A, Reduction-A, 7x Inception-B
(17x17x1024), Reduction-B, 3x Inception-C (8x8x1536), global average pooling, dropout (keep 0.8,
Figure 9) and the classifier. "Valid" convolutions and pools have no padding, the others keep the
size (padding k // 2). Average pools in the branches exclude the padding from the mean.

Inception-ResNet-v2 (sec. 3.2, Figures 15-20): residual Inception blocks
out = ReLU(x + s * W[branches]) with the residual scaling s of sec. 3.3 (0.17, 0.10, 0.20 for the
35x35, 17x17 and 8x8 blocks, as released). Departures of the released model, which timm and this
follow, from the paper's figures: its stem ends in a 320-channel Inception-A-like block (Mixed_5b)
instead of Figure 3's stem; the blocks' residual widths are 320 / 1088 / 2080 instead of
384 / 1154 / 2048; there are 10, 20 and 10 blocks (the last one with scale 1 and no ReLU) instead
of Figure 15's 5, 10 and 5. Reduction-A has k, l, m, n = 256, 256, 384, 384 (Table 1).
`num_blocks` sets the three block counts.

Parameter counts (timm, 299x299, 1000 classes): `inception_v4` 42,679,816 and
`inception_resnet_v2` 55,843,464. Both count a batch-norm scale (gamma) per channel as timm does;
TF-slim's checkpoints have no gamma (`scale=False`, fixed at 1), which is 31,584 fewer parameters
for Inception-v4 and 30,272 fewer for Inception-ResNet-v2 (one per batch-norm channel).
Departure: convolutions are He-initialised (fan-out, arXiv:1502.01852) instead of TF-slim's
truncated normal; the classifiers use torch's default init. TF-slim's models also carry an
auxiliary classifier (AuxLogits, on the 17x17 grid), which timm and this leave out.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets import layers


def _chain(x: jax.Array, train: bool, name: str, specs: Sequence[tuple]) -> jax.Array:
  """ConvBN layers `{name}_0`, `{name}_1`, ... given as (features, kernel, strides, padding)."""
  for i, spec in enumerate(specs):
    x = layers.ConvBN(*spec, name=f'{name}_{i}')(x, train)
  return x


def _avg_branch(x: jax.Array, train: bool, name: str, features: int) -> jax.Array:
  x = layers.pool(x, 'avg', 3, 1, padding=1)
  return layers.ConvBN(features, 1, name=f'{name}_1')(x, train)


def _cat(*xs: jax.Array) -> jax.Array:
  return jnp.concatenate(xs, axis=-1)


# Inception-v4 (timm's Mixed3a ... InceptionC). Figure numbers are the paper's.

class Mixed3a(nn.Module):
  """Figure 3, first split: 3x3/2 max pool | 3x3/2 conv 96."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(layers.pool(x, 'max', 3, 2), layers.ConvBN(96, 3, 2, name='conv')(x, train))


class Mixed4a(nn.Module):
  """Figure 3, second split: 1x1 64, 3x3 96 | 1x1 64, 7x1 64, 1x7 64, 3x3 96 (valid)."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(_chain(x, train, 'branch0', [(64, 1), (96, 3)]),
                _chain(x, train, 'branch1', [(64, 1), (64, (1, 7), 1, (0, 3)),
                                             (64, (7, 1), 1, (3, 0)), (96, 3)]))


class Mixed5a(nn.Module):
  """Figure 3, third split: 3x3/2 conv 192 | 3x3/2 max pool."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(layers.ConvBN(192, 3, 2, name='conv')(x, train), layers.pool(x, 'max', 3, 2))


class InceptionA(nn.Module):
  """Figure 4 (35x35)."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(layers.ConvBN(96, 1, name='branch0')(x, train),
                _chain(x, train, 'branch1', [(64, 1), (96, 3, 1, 1)]),
                _chain(x, train, 'branch2', [(64, 1), (96, 3, 1, 1), (96, 3, 1, 1)]),
                _avg_branch(x, train, 'branch3', 96))


class ReductionA(nn.Module):
  """Figure 7 (35x35 -> 17x17) with Table 1's k, l, m, n."""
  k: int = 192
  l: int = 224  # noqa: E741  (the paper's name)
  m: int = 256
  n: int = 384

  @nn.compact
  def __call__(self, x, train):
    return _cat(layers.ConvBN(self.n, 3, 2, name='branch0')(x, train),
                _chain(x, train, 'branch1', [(self.k, 1), (self.l, 3, 1, 1), (self.m, 3, 2)]),
                layers.pool(x, 'max', 3, 2))


class InceptionB(nn.Module):
  """Figure 5 (17x17)."""

  @nn.compact
  def __call__(self, x, train):
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    return _cat(layers.ConvBN(384, 1, name='branch0')(x, train),
                _chain(x, train, 'branch1', [(192, 1), (224, *row), (256, *col)]),
                _chain(x, train, 'branch2', [(192, 1), (192, *col), (224, *row), (224, *col),
                                             (256, *row)]),
                _avg_branch(x, train, 'branch3', 128))


class ReductionB(nn.Module):
  """Figure 8 (17x17 -> 8x8)."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(_chain(x, train, 'branch0', [(192, 1), (192, 3, 2)]),
                _chain(x, train, 'branch1', [(256, 1), (256, (1, 7), 1, (0, 3)),
                                             (320, (7, 1), 1, (3, 0)), (320, 3, 2)]),
                layers.pool(x, 'max', 3, 2))


class InceptionC(nn.Module):
  """Figure 6 (8x8): the 1x3 / 3x1 pairs are applied side by side and concatenated."""

  @nn.compact
  def __call__(self, x, train):
    conv = lambda features, kernel, padding, name, y: layers.ConvBN(
        features, kernel, 1, padding, name=name)(y, train)
    branch1 = conv(384, 1, 0, 'branch1_0', x)
    branch2 = conv(384, 1, 0, 'branch2_0', x)
    branch2 = conv(448, (3, 1), (1, 0), 'branch2_1', branch2)
    branch2 = conv(512, (1, 3), (0, 1), 'branch2_2', branch2)
    return _cat(conv(256, 1, 0, 'branch0', x),
                conv(256, (1, 3), (0, 1), 'branch1_1a', branch1),
                conv(256, (3, 1), (1, 0), 'branch1_1b', branch1),
                conv(256, (1, 3), (0, 1), 'branch2_3a', branch2),
                conv(256, (3, 1), (1, 0), 'branch2_3b', branch2),
                _avg_branch(x, train, 'branch3', 256))


class InceptionV4(nn.Module):
  num_classes: int = 1000
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    stem = [functools.partial(layers.ConvBN, 32, 3, 2), functools.partial(layers.ConvBN, 32, 3),
            functools.partial(layers.ConvBN, 64, 3, padding=1), Mixed3a, Mixed4a, Mixed5a]
    blocks = (stem + [InceptionA] * 4 + [ReductionA] + [InceptionB] * 7 + [ReductionB]
              + [InceptionC] * 3)
    for i, block in enumerate(blocks):
      x = block(name=f'features_{i}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=layers.torch_linear_init, name='last_linear')(x)


# Inception-ResNet-v2 (timm's Mixed_5b ... Block8).

class Mixed5b(nn.Module):
  """The released stem's last block: an Inception-A-like split to 320 channels at 35x35."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(layers.ConvBN(96, 1, name='branch0')(x, train),
                _chain(x, train, 'branch1', [(48, 1), (64, 5, 1, 2)]),
                _chain(x, train, 'branch2', [(64, 1), (96, 3, 1, 1), (96, 3, 1, 1)]),
                _avg_branch(x, train, 'branch3', 64))


class ResidualInception(nn.Module):
  """x -> act(x + scale * conv1x1(concat(branches))): Figures 16 (35x35), 17 (17x17), 19 (8x8).

  `branches` lists each branch's ConvBN specs; a branch of one layer is named `branch{i}` as in
  timm, a longer one `branch{i}_{j}`.
  """
  branches: tuple
  scale: float
  activate: bool = True

  @nn.compact
  def __call__(self, x, train):
    outs = []
    for i, specs in enumerate(self.branches):
      if len(specs) == 1:
        outs.append(layers.ConvBN(*specs[0], name=f'branch{i}')(x, train))
      else:
        outs.append(_chain(x, train, f'branch{i}', specs))
    up = nn.Conv(x.shape[-1], (1, 1), kernel_init=layers.he_normal(), name='conv2d')(_cat(*outs))
    x = x + self.scale * up
    return nn.relu(x) if self.activate else x


_BLOCK35 = (((32, 1),), ((32, 1), (32, 3, 1, 1)), ((32, 1), (48, 3, 1, 1), (64, 3, 1, 1)))
_BLOCK17 = (((192, 1),), ((128, 1), (160, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0))))
_BLOCK8 = (((192, 1),), ((192, 1), (224, (1, 3), 1, (0, 1)), (256, (3, 1), 1, (1, 0))))


class Mixed7a(nn.Module):
  """Reduction-B as released (Figure 18, 17x17 -> 8x8)."""

  @nn.compact
  def __call__(self, x, train):
    return _cat(_chain(x, train, 'branch0', [(256, 1), (384, 3, 2)]),
                _chain(x, train, 'branch1', [(256, 1), (288, 3, 2)]),
                _chain(x, train, 'branch2', [(256, 1), (288, 3, 1, 1), (320, 3, 2)]),
                layers.pool(x, 'max', 3, 2))


class InceptionResNetV2(nn.Module):
  num_classes: int = 1000
  num_blocks: Sequence[int] = (10, 20, 10)
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda name, *spec: lambda y: layers.ConvBN(*spec, name=name)(y, train)
    x = conv('conv2d_1a', 32, 3, 2)(x)
    x = conv('conv2d_2a', 32, 3)(x)
    x = conv('conv2d_2b', 64, 3, 1, 1)(x)
    x = layers.pool(x, 'max', 3, 2)
    x = conv('conv2d_3b', 80, 1)(x)
    x = conv('conv2d_4a', 192, 3)(x)
    x = layers.pool(x, 'max', 3, 2)
    x = Mixed5b(name='mixed_5b')(x, train)
    n35, n17, n8 = self.num_blocks
    for i in range(n35):
      x = ResidualInception(_BLOCK35, 0.17, name=f'repeat_{i}')(x, train)
    x = ReductionA(256, 256, 384, 384, name='mixed_6a')(x, train)
    for i in range(n17):
      x = ResidualInception(_BLOCK17, 0.10, name=f'repeat_1_{i}')(x, train)
    x = Mixed7a(name='mixed_7a')(x, train)
    for i in range(n8 - 1):
      x = ResidualInception(_BLOCK8, 0.20, name=f'repeat_2_{i}')(x, train)
    x = ResidualInception(_BLOCK8, 1.0, activate=False, name='block8')(x, train)
    x = conv('conv2d_7b', 1536, 1)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=layers.torch_linear_init, name='classif')(x)


_PAPER = ('Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning '
          '(Szegedy et al. 2016, arXiv:1602.07261)')
zoo.register('inception_v4', InceptionV4, inputs=zoo.image_input(299, 299, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=42_679_816,
             reference_source='timm inception_v4')
zoo.register('inception_resnet_v2', InceptionResNetV2, inputs=zoo.image_input(299, 299, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=55_843_464,
             reference_source='timm inception_resnet_v2')
