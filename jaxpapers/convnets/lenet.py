"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE, section II.B): convolution + subsampling stages, then fully connected layers.

Departures, as in every modern re-implementation: ReLU instead of scaled tanh, max pooling instead
of trainable average subsampling (S2, S4 have no parameters here), C3 connected to all six S2 maps
(the paper's Table I connects each C3 map to a subset, 1,516 parameters instead of 2,416), and a
linear softmax output instead of the Euclidean RBF units. With these, `lenet5` on 32x32 inputs has
the widely quoted 61,706 parameters: C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850.
`digits_cnn` is the same network shape sized for the 8x8 digits images (3x3 kernels, SAME padding);
`shapes_cnn` the same layers for the 32x32 shapes images' five shapes.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers import zoo
from jaxpapers.convnets import layers


class LeNet(nn.Module):
  conv_features: Sequence[int] = (6, 16)
  kernel_size: int = 5
  padding: str = 'VALID'
  hidden_features: Sequence[int] = (120, 84)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or normalisation: the same function in training and evaluation.
    for features in self.conv_features:
      x = nn.relu(nn.Conv(features, (self.kernel_size, self.kernel_size), padding=self.padding)(x))
      x = layers.pool(x, 'max', 2, 2)
    x = x.reshape(x.shape[0], -1)
    for features in self.hidden_features:
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(self.num_classes)(x)


_PAPER = 'Gradient-Based Learning Applied to Document Recognition (LeCun et al. 1998)'
zoo.register('lenet5', LeNet, inputs=zoo.image_input(32, 32, 1), apply_kwargs={'train': False},
             paper=_PAPER, reference_params=61_706,
             reference_source='paper layer sizes with full C3 connectivity (see module docstring)')
# 3*3*32+32 + 3*3*32*64+64 + (2*2*64)*128+128 + 128*10+10
zoo.register('digits_cnn', lambda: LeNet(conv_features=(32, 64), kernel_size=3, padding='SAME',
                                         hidden_features=(128,)),
             inputs=zoo.image_input(8, 8, 1), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=320 + 18_496 + 32_896 + 1_290, reference_source='closed form')
# The fixed classifier of the 32x32 shapes images' `shape` (5 classes), for sample quality:
# 3*3*3*32+32 + 3*3*32*64+64 + (8*8*64)*128+128 + 128*5+5.
zoo.register('shapes_cnn', lambda: LeNet(conv_features=(32, 64), kernel_size=3, padding='SAME',
                                         hidden_features=(128,), num_classes=5),
             inputs=zoo.image_input(32, 32, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=896 + 18_496 + 524_416 + 645, reference_source='closed form')
