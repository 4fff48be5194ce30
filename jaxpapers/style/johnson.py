"""The image transformation network of "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution" (Johnson, Alahi & Fei-Fei 2016, arXiv:1603.08155).

Sec. 3.1 and the supplementary material's architecture (style transfer): c9s1-32, d64, d128,
five residual blocks of 128 channels, u64, u32, c9s1-3, where c9s1-k is a 9x9 stride-1
convolution, dk a 3x3 stride-2 convolution, uk a 3x3 stride-1/2 (transposed) convolution, each
followed by normalisation and ReLU, and the output layer a scaled tanh (here (tanh + 1) / 2: images
in [0, 1]). A residual block is conv3x3-norm-ReLU-conv3x3-norm plus the identity, with no ReLU after
the sum (the supplementary's Fig. 1, after Gross & Wilber).
Training (sec. 4.1): the feature reconstruction loss at relu2_2 plus the style reconstruction loss
at relu1_2, relu2_2, relu3_3, relu4_3 of VGG-16, plus total variation; Adam, learning rate 1e-3,
batch 4, 40,000 iterations on 256x256 COCO crops (`experiments/style_transfer.py`, preset johnson).

Which version is followed: the later reference code (jcjohnson/fast-neural-style, 2017), not the
paper's first layout: instance normalisation (Ulyanov et al. 2016, arXiv:1607.08022) instead of
batch normalisation, and reflection padding inside every convolution so each layer keeps its size,
instead of one 40-pixel reflection pad of the input with unpadded 3x3 convolutions in the residual
blocks. The transposed convolutions are torch's ConvTranspose2d(k=3, s=2, padding=1,
output_padding=1) (`jaxpapers.nn.conv_transpose`); `upsampling='nearest'` is PyTorch's
examples/fast_neural_style's nearest-neighbour x2 then a 3x3 convolution (the "resize-convolution"
of Odena et al. 2016, which avoids the checkerboard patterns of stride-2 transposed convolutions;
the offline johnson run showed them with the paper's layers, WORKSPACE.md). The loss network is
the zoo's VGG-19 layout (relu1_2 ... relu4_3 exist in VGG-19 as in VGG-16).

Parameter count of `johnson_transform`: 1,679,235, equal to PyTorch's examples/fast_neural_style
TransformerNet (which upsamples by nearest-neighbour then a 3x3 convolution: the same parameters as
a 3x3 transposed convolution): 9x9 and 3x3 convolutions with biases plus an affine instance norm
(scale and bias) after every layer but the last.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.nn.conv_transpose import ConvTranspose


def reflect_conv(x: jax.Array, features: int, kernel: int, stride: int, name: str) -> jax.Array:
  pad = kernel // 2
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')
  return nn.Conv(features, (kernel, kernel), strides=stride, padding='VALID', name=name)(x)


class ResidualBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.relu(nn.InstanceNorm(name='norm1')(reflect_conv(x, self.features, 3, 1, 'conv1')))
    h = nn.InstanceNorm(name='norm2')(reflect_conv(h, self.features, 3, 1, 'conv2'))
    return x + h


class TransformNet(nn.Module):
  """Images [B, H, W, 3] in [0, 1] (H, W multiples of 4) -> stylised images in [0, 1]."""
  widths: tuple[int, int, int] = (32, 64, 128)
  num_residual: int = 5
  upsampling: str = 'transposed'  # the paper's | 'nearest': x2 nearest-neighbour, then a 3x3 conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # Instance normalisation behaves the same in training and at test time.
    w1, w2, w3 = self.widths
    x = nn.relu(nn.InstanceNorm(name='norm_in')(reflect_conv(x, w1, 9, 1, 'conv_in')))
    x = nn.relu(nn.InstanceNorm(name='norm_down1')(reflect_conv(x, w2, 3, 2, 'down1')))
    x = nn.relu(nn.InstanceNorm(name='norm_down2')(reflect_conv(x, w3, 3, 2, 'down2')))
    for i in range(self.num_residual):
      x = ResidualBlock(w3, name=f'residual_{i}')(x)
    for i, width in enumerate((w2, w1)):
      if self.upsampling == 'transposed':
        x = ConvTranspose(width, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)),
                          name=f'up{i + 1}')(x)
      elif self.upsampling == 'nearest':
        x = reflect_conv(x.repeat(2, axis=1).repeat(2, axis=2), width, 3, 1, f'up{i + 1}')
      else:
        raise ValueError(f'upsampling={self.upsampling!r}; valid: transposed, nearest')
      x = nn.relu(nn.InstanceNorm(name=f'norm_up{i + 1}')(x))
    x = reflect_conv(x, 3, 9, 1, 'conv_out')
    return (jnp.tanh(x) + 1.0) / 2.0


_PAPER = ('Perceptual Losses for Real-Time Style Transfer and Super-Resolution '
          '(Johnson et al. 2016, arXiv:1603.08155)')
zoo.register('johnson_transform', TransformNet, inputs=zoo.image_input(256, 256, 3),
             paper=_PAPER, reference_params=1_679_235,
             reference_source='PyTorch examples fast_neural_style TransformerNet')
zoo.register('johnson_transform_tiny',
             lambda **kw: TransformNet(widths=(8, 16, 32), num_residual=2, **kw),
             inputs=zoo.image_input(32, 32, 3), paper=_PAPER, reference_params=None,
             reference_source='none: a small variant for tests')
