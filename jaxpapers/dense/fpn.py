"""FPN: "Feature Pyramid Networks for Object Detection" (Lin, Dollar, Girshick, He, Hariharan,
Belongie 2016, arXiv:1612.03144), with a semantic-segmentation head.

`FPN` is sec. 3's top-down pathway with lateral connections (Figure 3): from a backbone's stage
outputs C2..C5 (strides 4..32), each C_i goes through a 1x1 lateral convolution to d = 256
channels; starting from the coarsest, each map is upsampled 2x by nearest-neighbour and added to
the next finer lateral map; a 3x3 convolution on every merged map gives P2..P5 ("to reduce the
aliasing effect of upsampling"). No non-linearities in these extra layers (sec. 3: "we have
found their impacts minor"). Both convolutions have biases, as torchvision's
FeaturePyramidNetwork; `extra_max_pool` adds P6 as a stride-2 subsampling of P5 (sec. 4.1, for the
RPN; torchvision's LastLevelMaxPool, a 1x1 max pool of stride 2). `extra_convs` adds coarser levels
by 3x3 stride-2 convolutions, the first on P5 and each later one after a ReLU: RetinaNet's P6 and P7
(Lin et al. 2017, arXiv:1708.02002, sec. 4 "Feature Pyramid Network Backbone"; torchvision's
LastLevelP6P7 with in_channels == out_channels, which takes P5 rather than the paper's C5).

`FPNSegmenter` puts a semantic head on a ResNet + FPN, the simple form of Panoptic FPN's (Kirillov
et al. 2019, arXiv:1901.02446, sec. 3): every P_i is upsampled (bilinear) to P2's size and summed,
then a 3x3 convolution + ReLU and a 1x1 convolution give the class scores at stride 4, bilinearly
upsampled to the image. The FPN paper itself uses the pyramid for detection and segment proposals
(sec. 5-6), not semantic segmentation: this head is the departure that lets the scenes experiment
compare FPN with the other segmenters.

`fpn_resnet50` (a ResNet-50 trunk without its classifier, 23,508,032 parameters, plus the FPN's
3,344,384: four laterals 256/512/1024/2048 -> 256 and four 3x3 256 -> 256, with biases) has
26,852,416 parameters from those layer sizes; torchvision's resnet_fpn_backbone has the same layers
but freezes its batch norms (FrozenBatchNorm2d, not parameters).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets.resnet import ResNetFeatures
from jaxpapers.dense import layers


def _nearest_2x(x: jax.Array, height: int, width: int) -> jax.Array:
  # torch's F.interpolate(mode='nearest', size=...) picks floor(i * in / out); for exact 2x this
  # is the repetition of each pixel.
  rows = (jnp.arange(height) * x.shape[1]) // height
  cols = (jnp.arange(width) * x.shape[2]) // width
  return x[:, rows][:, :, cols]


class FPN(nn.Module):
  """C2..C5 (finest first) -> P2..P5 (and P6 with `extra_max_pool`; `extra_convs` more levels),
  all with `features` channels."""
  features: int = 256
  extra_max_pool: bool = False
  extra_convs: int = 0

  @nn.compact
  def __call__(self, inputs: Sequence[jax.Array]) -> list[jax.Array]:
    laterals = [nn.Conv(self.features, (1, 1), name=f'lateral{i}')(c) for i, c in enumerate(inputs)]
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
      merged.insert(0, lateral + _nearest_2x(merged[0], *lateral.shape[1:3]))
    outputs = [nn.Conv(self.features, (3, 3), padding=1, name=f'output{i}')(m)
               for i, m in enumerate(merged)]
    if self.extra_max_pool:
      outputs.append(outputs[-1][:, ::2, ::2])
    for i in range(self.extra_convs):
      x = outputs[-1] if i == 0 else nn.relu(outputs[-1])
      outputs.append(nn.Conv(self.features, (3, 3), strides=2, padding=1, name=f'extra{i}')(x))
    return outputs


class ResNetFPN(nn.Module):
  """A ResNet trunk (C2..C5) and its FPN over the stages from `first_stage` on (1: C3..C5, as
  RetinaNet's)."""
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = 'bottleneck'
  features: int = 256
  extra_max_pool: bool = False
  first_stage: int = 0
  extra_convs: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    stages = ResNetFeatures(self.stage_sizes, self.block, name='body')(x, train)
    return FPN(self.features, self.extra_max_pool, self.extra_convs, name='fpn')(
        stages[self.first_stage:])


class FPNSegmenter(nn.Module):
  num_classes: int = 21
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = 'bottleneck'
  features: int = 256
  head_features: int = 128

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    pyramid = ResNetFPN(self.stage_sizes, self.block, self.features, name='backbone')(x, train)
    h, w = pyramid[0].shape[1:3]
    y = sum(layers.resize(p, h, w) for p in pyramid)
    y = nn.relu(nn.Conv(self.head_features, (3, 3), padding=1, name='head_conv')(y))
    y = nn.Conv(self.num_classes, (1, 1), name='classifier')(y)
    return {'out': layers.resize(y, *x.shape[1:3])}


_PAPER = ('Feature Pyramid Networks for Object Detection (Lin et al. 2016, arXiv:1612.03144)')
zoo.register('fpn_resnet50', lambda: ResNetFPN(), inputs=zoo.image_input(224, 224, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=26_852_416,
             reference_source='layer sizes: torchvision resnet50 minus fc + FPN (sec. 3, d = 256)')
zoo.register('fpn_resnet18_scenes', lambda: FPNSegmenter(
    num_classes=6, stage_sizes=(2, 2, 2, 2), block='basic', features=64, head_features=64),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
