"""AlexNet: "ImageNet Classification with Deep Convolutional Neural Networks" (Krizhevsky,
Sutskever, Hinton, NeurIPS 2012), as torchvision's single-tower `alexnet`.

Follows sec. 3.5 / Figure 2 (five convolutions with ReLU, overlapping 3x3 stride-2 max pooling
after the first, second and fifth, then three fully connected layers with dropout 0.5 before the
first two, sec. 4.2) and the paper's initialisation (sec. 5): weights from N(0, 0.01^2), biases 1
in the second, fourth and fifth convolutions and the hidden fully connected layers (so their ReLUs
start with positive inputs), 0 elsewhere.

The layer widths are torchvision's, from the single-GPU variant of "One weird trick for
parallelizing convolutional neural networks" (Krizhevsky 2014, arXiv:1404.5997): 64, 192, 384, 256,
256 filters. The 2012 network was split over two GPUs: 96, 256, 384, 384, 256 filters, with the
second, fourth and fifth convolutions connected only to the kernel maps on their own GPU (so each
sees half of its input channels): "60 million parameters" (sec. 1), exactly 60,965,224 as laid out
in Caffe's grouped bvlc_alexnet. torchvision also drops the local
response normalisation of sec. 3.3 (parameter-free) and puts an adaptive 6x6 average pool before the
classifier, which makes inputs other than 224x224 usable (an identity at 224).

`alexnet` has torchvision's 61,100,840 parameters:
  conv 3*64*11^2 + 64*192*5^2 + 192*384*9 + 384*256*9 + 256*256*9 (+ biases) = 2,470,336
  fc   9216*4096 + 4096*4096 + 4096*1000 (+ biases)                         = 58,630,504.
Modules are named as torchvision's state dict (`features_{i}`, `classifier_{i}`), which
`torchvision_convert` relies on.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxpapers import zoo
from jaxpapers.convnets import layers

_weight_init = nn.initializers.normal(0.01)


class AlexNet(nn.Module):
  num_classes: int = 1000
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # (torchvision index, filters, kernel, stride, padding, bias init, max pool after)
    convs = ((0, 64, 11, 4, 2, 0.0, True), (3, 192, 5, 1, 2, 1.0, True),
             (6, 384, 3, 1, 1, 0.0, False), (8, 256, 3, 1, 1, 1.0, False),
             (10, 256, 3, 1, 1, 1.0, True))
    for index, features, kernel, stride, padding, bias, pool_after in convs:
      x = nn.Conv(features, (kernel, kernel), strides=stride,
                  padding=layers.symmetric_padding(padding), kernel_init=_weight_init,
                  bias_init=nn.initializers.constant(bias), name=f'features_{index}')(x)
      x = nn.relu(x)
      if pool_after:
        x = layers.pool(x, 'max', 3, 2)
    x = layers.adaptive_avg_pool(x, (6, 6))
    x = x.reshape(x.shape[0], -1)
    for index in (1, 4):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(4096, kernel_init=_weight_init, bias_init=nn.initializers.ones,
                           name=f'classifier_{index}')(x))
    return nn.Dense(self.num_classes, kernel_init=_weight_init, name='classifier_6')(x)


zoo.register('alexnet', AlexNet, inputs=zoo.image_input(224, 224, 3), apply_kwargs={'train': False},
             paper='ImageNet Classification with Deep Convolutional Neural Networks '
                   '(Krizhevsky et al. 2012)',
             reference_params=61_100_840, reference_source='torchvision alexnet')
