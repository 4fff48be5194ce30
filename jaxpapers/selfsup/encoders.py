"""A small convnet encoder for the self-supervised experiments on the offline 32x32 shapes.

Not from a paper: the papers use a ResNet-50 on ImageNet (SimCLR, MoCo, BYOL, SwAV, Barlow Twins;
SimSiam also a CIFAR ResNet-18), far beyond a 2-core CPU. This is a VGG-style stack, each stage a
3x3 convolution (no bias) -> BatchNorm -> ReLU -> 2x2 max pool, then a global average pool: the
representation h the papers probe is that pooled vector (the ResNet's 2048-d average-pool output in
the papers). With `num_classes > 0` a linear classifier follows, so the same network trains
supervised (the baseline of the experiments' table) through `experiments/classify.py` too.
Global pooling makes it accept any image size, as SwAV's multi-crop needs (large and small crops).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers import zoo
from jaxpapers.convnets import layers
from jaxpapers.nn.batch_norm import BatchNorm


class ConvEncoder(nn.Module):
  """`images [B, H, W, C] -> features [B, widths[-1]]` (or logits [B, num_classes] when > 0)."""
  widths: Sequence[int] = (16, 32, 64)
  num_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3), use_bias=False, name=f'conv_{i}')(x)
      x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f'bn_{i}')(x)
      x = layers.pool(nn.relu(x), 'max', 2, 2)
    x = x.mean(axis=(1, 2))
    if self.num_classes:
      x = nn.Dense(self.num_classes, name='fc')(x)
    return x


def _count(widths: Sequence[int], channels: int = 3) -> int:
  """3x3 kernels without bias plus BN's scale and shift, per stage."""
  total, previous = 0, channels
  for width in widths:
    total += 9 * previous * width + 2 * width
    previous = width
  return total


_PAPER = 'project encoder for the self-supervised family (see jaxpapers/selfsup/encoders.py)'
for _name, _widths in {'ssl_convnet': (16, 32, 64), 'ssl_convnet_tiny': (8, 16)}.items():
  zoo.register(_name, lambda widths=_widths: ConvEncoder(widths=widths),
               inputs=zoo.image_input(32, 32, 3), apply_kwargs={'train': False}, paper=_PAPER,
               reference_params=_count(_widths), reference_source='closed form (9 c_in c_out + 2 c_out '
                                                                  'per stage)')
