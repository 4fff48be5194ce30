"""U-Net: "U-Net: Convolutional Networks for Biomedical Image Segmentation" (Ronneberger, Fischer,
Brox 2015, arXiv:1505.04597).

Sec. 2 and Figure 1: a contracting path of `depth` steps, each two 3x3 convolutions (ReLU) and a
2x2 max pool of stride 2, the number of channels doubling at each step from `features` (64); at
the bottom two 3x3 convolutions with 16 `features` (1024); an expansive path whose every step is a
2x2 "up-convolution" halving the channels, concatenation with the cropped feature map of the
contracting step at the same level, and two 3x3 convolutions; a final 1x1 convolution to the
classes. The original convolutions are unpadded (`padding='VALID'`), so a 572x572 tile gives a
388x388 map (the paper's overlap-tile strategy); the skip maps are centre-cropped. Weights are drawn
from N(0, 2/N), N = 9 c_in (sec. 3, He initialisation, fan-in).

`unet_original` (1 input channel, 2 classes) has 31,030,658 parameters from Figure 1's layer sizes
(convolutions with biases); the paper does not state a count.

Departures: `padding='SAME'` (not in the paper) keeps the output at the input's size, which the
scenes preset uses for 64x64 images; the pixel-wise loss weight map of eq. 2 (separating touching
cells) and the elastic deformations of sec. 3.1 are not implemented; `batch_norm=True` (off in the
presets) adds batch normalisation after every 3x3 convolution, as many later U-Nets do.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.dense import layers


def _centre_crop(x: jax.Array, height: int, width: int) -> jax.Array:
  top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
  return x[:, top:top + height, left:left + width]


class DoubleConv(nn.Module):
  features: int
  padding: str = 'VALID'
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i in range(2):
      x = nn.Conv(self.features, (3, 3), padding=self.padding,
                  kernel_init=conv_layers.he_normal('fan_in'), name=f'conv{i}')(x)
      if self.batch_norm:
        x = conv_layers.batch_norm(train, f'bn{i}')(x)
      x = nn.relu(x)
    return x


class UNet(nn.Module):
  num_classes: int = 2
  features: int = 64
  depth: int = 4
  padding: str = 'VALID'
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    skips = []
    for level in range(self.depth):
      x = DoubleConv(self.features * 2**level, self.padding, self.batch_norm,
                     name=f'down{level}')(x, train)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = DoubleConv(self.features * 2**self.depth, self.padding, self.batch_norm,
                   name='bottom')(x, train)
    for level in reversed(range(self.depth)):
      width = self.features * 2**level
      x = layers.upsample(width, 2, 2, f'upconv{level}',
                          kernel_init=conv_layers.he_normal('fan_in'))(x)
      skip = _centre_crop(skips[level], x.shape[1], x.shape[2])
      x = jnp.concatenate([skip, x], axis=-1)
      x = DoubleConv(width, self.padding, self.batch_norm, name=f'up{level}')(x, train)
    return {'out': nn.Conv(self.num_classes, (1, 1), name='classifier')(x)}


_PAPER = ('U-Net: Convolutional Networks for Biomedical Image Segmentation '
          '(Ronneberger et al. 2015, arXiv:1505.04597)')
zoo.register('unet_original', lambda: UNet(), inputs=zoo.image_input(572, 572, 1),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=31_030_658,
             reference_source='layer sizes of Figure 1 (the paper states no count)')
zoo.register('unet_scenes', lambda: UNet(num_classes=6, features=16, depth=3, padding='SAME'),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
