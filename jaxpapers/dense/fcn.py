"""FCN: "Fully Convolutional Networks for Semantic Segmentation" (Long, Shelhamer, Darrell 2015,
arXiv:1411.4038), as the paper's FCN-32s/16s/8s and as torchvision's `fcn_resnet50/101`.

`FCN8s` follows sec. 3-4 and Figure 3 on a VGG-16 trunk (config D): the classifier's fully connected
layers become convolutions (fc6 a 7x7 convolution with 4096 channels, fc7 1x1 with 4096, each with
ReLU and dropout 0.5), `score_fr` a 1x1 convolution to the classes; predictions are upsampled 2x by
a learned transposed convolution (4x4, stride 2, initialised to bilinear interpolation, no bias),
fused by summation with 1x1-convolution scores of pool4 (FCN-16s) and again of pool3 (FCN-8s), and
upsampled 8x to the image by a 16x16 stride-8 transposed convolution fixed to bilinear
interpolation (sec. 3.3: "the final layer deconvolutional filters are fixed to bilinear
interpolation"; here a parameter under `stop_gradient`). `skips` = 0, 1, 2 gives FCN-32s, 16s, 8s
(FCN-32s upsamples 32x by a 64x64 stride-32 fixed bilinear filter). Layer sizes as the authors'
Caffe models (fcn.berkeleyvision.org voc-fcn8s): `fcn8s_vgg16` with 21 classes has 134,489,759
parameters (from those layer sizes; the paper states none).
Departures: the Caffe models pad conv1_1 by 100 pixels and crop every fused map ("crop" layers);
here convolutions are 'SAME'-padded and upsampling is exactly 2x/8x, so no cropping is needed, and
input sizes must be multiples of 32. Score layers are zero-initialised as in the authors' code.

`FCN` is torchvision's `fcn_resnet50` / `fcn_resnet101` (the design of sec. 4 on a dilated ResNet,
Chen et al.'s DeepLab trick): a ResNet with strides of stages 3 and 4 replaced by dilation (output
stride 8), `FCNHead` (3x3 convolution to in/4 channels without bias, BN, ReLU, dropout 0.1, 1x1
convolution to the classes) on stage 4, and the auxiliary `FCNHead` on stage 3, both bilinearly
upsampled to the input. Named as torchvision's state dict (`backbone/...`, `classifier_0`,
`classifier_1`, `classifier_4`, `aux_classifier_*`) so `torchvision_convert` maps it. Counts,
equal to torchvision's documentation: fcn_resnet50 35,322,218, fcn_resnet101 54,314,346.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers import zoo
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.convnets import vgg
from jaxpapers.convnets.resnet import ResNetFeatures
from jaxpapers.dense import layers
from jaxpapers.nn.conv_transpose import conv_transpose


def fcn_head(x: jax.Array, train: bool, num_classes: int, prefix: str) -> jax.Array:
  """torchvision's FCNHead: Conv3x3(in -> in/4, no bias), BN, ReLU, Dropout(0.1), Conv1x1, as
  submodules `<prefix>_0`, `_1`, `_4` of the calling (compact) module."""
  inter = x.shape[-1] // 4
  x = nn.Conv(inter, (3, 3), padding=1, use_bias=False, kernel_init=conv_layers.he_normal(),
              name=f'{prefix}_0')(x)
  x = nn.relu(conv_layers.batch_norm(train, f'{prefix}_1')(x))
  x = nn.Dropout(0.1, deterministic=not train)(x)
  return nn.Conv(num_classes, (1, 1), name=f'{prefix}_4')(x)


class FCN(nn.Module):
  """torchvision's FCN on a dilated ResNet (output stride 8) with an optional auxiliary head."""
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  num_classes: int = 21
  aux: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    height, width = x.shape[1:3]
    features = ResNetFeatures(self.stage_sizes, 'bottleneck', dilate=(False, True, True),
                              name='backbone')(x, train)
    out = {'out': layers.resize(fcn_head(features[3], train, self.num_classes, 'classifier'),
                                height, width)}
    if self.aux:
      out['aux'] = layers.resize(fcn_head(features[2], train, self.num_classes, 'aux_classifier'),
                                 height, width)
    return out


class FCN8s(nn.Module):
  """The paper's FCN-32s/16s/8s (`skips` = 0/1/2) on a VGG trunk (Figure 3)."""
  num_classes: int = 21
  config: Sequence[int | str] = vgg.CONFIGS['D']
  fc_features: int = 4096
  fc_kernel: int = 7
  skips: int = 2
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    pools, index = [], 0
    for v in self.config:  # VGG's features, named as torchvision's (features_{i})
      if v == 'M':
        x = conv_layers.pool(x, 'max', 2, 2)
        pools.append(x)
        index += 1
        continue
      x = nn.relu(nn.Conv(v, (3, 3), padding=1, kernel_init=conv_layers.he_normal(),
                          name=f'features_{index}')(x))
      index += 2
    for i, kernel in ((6, self.fc_kernel), (7, 1)):
      x = nn.relu(nn.Conv(self.fc_features, (kernel, kernel), padding='SAME', name=f'fc{i}')(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    score = nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.zeros,
                    name='score_fr')(x)
    c = self.num_classes
    for skip, pool in zip(range(self.skips), (pools[3], pools[2])):
      up = layers.upsample(c, 4, 2, f'upscore{skip}', use_bias=False,
                           kernel_init=layers.bilinear_init)(score)
      score = up + nn.Conv(c, (1, 1), kernel_init=nn.initializers.zeros,
                           name=f'score_pool{4 - skip}')(pool)
    factor = 32 // 2**self.skips
    kernel = self.param('upscore_final', layers.bilinear_init, (2 * factor, 2 * factor, c, c))
    pad = layers.transposed_padding(2 * factor, factor)
    # Fixed bilinear interpolation: a parameter (as in Caffe, where its learning rate is 0) that
    # receives no gradient.
    return {'out': conv_transpose(score, jax.lax.stop_gradient(kernel), (factor, factor),
                                  (pad, pad))}


_PAPER = ('Fully Convolutional Networks for Semantic Segmentation '
          '(Long, Shelhamer, Darrell 2015, arXiv:1411.4038)')
for _name, _sizes, _count in (('fcn_resnet50', (3, 4, 6, 3), 35_322_218),
                              ('fcn_resnet101', (3, 4, 23, 3), 54_314_346)):
  zoo.register(_name, lambda sizes=_sizes: FCN(stage_sizes=sizes),
               inputs=zoo.image_input(224, 224, 3), apply_kwargs={'train': False}, paper=_PAPER,
               reference_params=_count, reference_source=f'torchvision {_name} (21 classes, aux)')
zoo.register('fcn8s_vgg16', lambda: FCN8s(), inputs=zoo.image_input(224, 224, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=134_489_759,
             reference_source="layer sizes of the authors' Caffe voc-fcn8s (the paper states none)")
# A narrow VGG trunk for 64x64 scenes: pool5 is 2x2, so fc6 is 3x3.
zoo.register('fcn8s_scenes', lambda: FCN8s(num_classes=6, config=(
    32, 'M', 64, 'M', 96, 96, 'M', 128, 128, 'M', 128, 128, 'M'), fc_features=256, fc_kernel=3),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
