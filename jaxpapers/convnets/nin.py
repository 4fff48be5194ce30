"""Network in Network (Lin, Chen, Yan 2013, arXiv:1312.4400): mlpconv layers and global average
pooling, the CIFAR-10 network of sec. 4.2.

Sec. 3.1 (eq. 2): an mlpconv layer is a convolution followed by a small multilayer perceptron
applied at every position, i.e. 1x1 convolutions ("cascaded cross channel parametric pooling",
cccp), each with a ReLU. Sec. 3.2: the last mlpconv layer outputs one feature map per class and
global average pooling turns them into the class scores, with no fully connected layer. Sec. 4.1:
three stacked mlpconv layers, each followed by 2x spatial downsampling, dropout on the outputs of
all but the last.

The paper leaves the layer sizes to its released Caffe model (gist mavenlin/e56253735ef32c3c296d,
cifar10_nin.prototxt), which this follows layer for layer:
  conv1 5x5x192 pad 2, cccp1 160, cccp2 96, 3x3/2 max pool, dropout 0.5,
  conv2 5x5x192 pad 2, cccp3 192, cccp4 192, 3x3/2 average pool, dropout 0.5,
  conv3 3x3x192 pad 1, cccp5 192, cccp6 10, 8x8 global average pool;
every convolution has a bias and a ReLU (the class maps too). Caffe's pools round the output size
up (32 -> 16 -> 8) and average only over the input inside each window (`layers.pool`, ceil_mode).
The sec. 4.1 text says every mlpconv layer is followed by max pooling; the released model averages
in the second pool. The paper states no parameter count; from the model's layer sizes:
14,592 + 30,880 + 15,456 + 460,992 + 37,056 + 37,056 + 331,968 + 37,056 + 1,930 = 966,986.

Departure: initialisation is He normal (fan-out, He et al. 2015, arXiv:1502.01852) instead of the
prototxt's hand-set Gaussian standard deviations.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets import layers


class NiN(nn.Module):
  num_classes: int = 10
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # (conv name, filters, kernel) followed by the two cccp layers of each mlpconv layer.
    mlpconvs = ((('conv1', 192, 5), ('cccp1', 160, 1), ('cccp2', 96, 1)),
                (('conv2', 192, 5), ('cccp3', 192, 1), ('cccp4', 192, 1)),
                (('conv3', 192, 3), ('cccp5', 192, 1), ('cccp6', self.num_classes, 1)))
    for i, mlpconv in enumerate(mlpconvs):
      for name, features, kernel in mlpconv:
        x = nn.relu(nn.Conv(features, (kernel, kernel), padding=kernel // 2,
                            kernel_init=layers.he_normal(), name=name)(x))
      if i < 2:
        x = layers.pool(x, 'max' if i == 0 else 'avg', 3, 2, ceil_mode=True)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return jnp.mean(x, axis=(1, 2))


zoo.register('nin_cifar10', NiN, inputs=zoo.image_input(32, 32, 3), apply_kwargs={'train': False},
             paper='Network In Network (Lin et al. 2013, arXiv:1312.4400)',
             reference_params=966_986,
             reference_source="layer sizes of the authors' Caffe model cifar10_nin.prototxt "
                              '(closed form in the module docstring)')
