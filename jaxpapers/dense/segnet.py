"""SegNet: "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation"
(Badrinarayanan, Kendall, Cipolla 2015, arXiv:1511.00561).

Sec. 3 and Figure 2: the encoder is VGG-16's 13 convolutional layers (3x3, batch normalisation,
ReLU) in five stacks, each followed by a 2x2 stride-2 max pool that stores the argmax position of
every window ("max-pooling indices", 2 bits per window); the decoder mirrors it: each stack first
upsamples its input by placing every value at the position its encoder's pooling index names
(zeros elsewhere: a sparse map, no learned upsampling), then densifies it with trainable 3x3
convolutions + BN + ReLU; the last decoder's output goes to a 3x3 convolution to the classes
(softmax). The decoder's widths are those of the authors' Caffe model (segnet_train.prototxt):
512,512,512 | 512,512,256 | 256,256,128 | 128,64 | 64, then the classifier. `segnet` with 11
classes (CamVid, sec. 4) has 29,449,355 parameters from those layer sizes (convolutions with biases,
BN scale and shift); the paper's Table 6 gives 29.5M, which this rounds below (29.4M); counting the BN
running means and variances too (+15,872), as Caffe's BN blobs are, gives 29.47M, which rounds to
it.

Departures: inputs must have sides divisible by 32 (the Caffe model upsamples to stored sizes for
odd ones); the median-frequency class balancing of sec. 3.4 is the experiment's choice, not the
model's; initialisation is He's (the paper's encoder starts from ImageNet VGG-16 weights).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers import zoo
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.dense import layers

VGG16_ENCODER = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CAFFE_DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))


class ConvBNReLU(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), padding=1, kernel_init=conv_layers.he_normal(),
                name='conv')(x)
    return nn.relu(conv_layers.batch_norm(train, 'bn')(x))


class SegNet(nn.Module):
  num_classes: int = 11
  encoder: Sequence[Sequence[int]] = VGG16_ENCODER
  decoder: Sequence[Sequence[int]] = CAFFE_DECODER

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    indices = []
    for s, widths in enumerate(self.encoder):
      for i, width in enumerate(widths):
        x = ConvBNReLU(width, name=f'conv{s + 1}_{i + 1}')(x, train)
      x, index = layers.max_pool_with_indices(x)
      indices.append(index)
    for s, widths in enumerate(self.decoder):
      stage = len(self.encoder) - s  # the encoder stack whose indices this decoder uses
      x = layers.max_unpool(x, indices[stage - 1])
      for i, width in enumerate(widths):
        x = ConvBNReLU(width, name=f'conv{stage}_{len(widths) - i}_D')(x, train)
    return {'out': nn.Conv(self.num_classes, (3, 3), padding=1, name='classifier')(x)}


_PAPER = ('SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation '
          '(Badrinarayanan et al. 2015, arXiv:1511.00561)')
zoo.register('segnet', lambda: SegNet(), inputs=zoo.image_input(352, 480, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=29_449_355,
             reference_source="layer sizes of the authors' Caffe model (Table 6: 29.5M, see docstring)")
zoo.register('segnet_scenes', lambda: SegNet(
    num_classes=6, encoder=((16, 16), (32, 32), (64, 64), (64, 64), (64, 64)),
    decoder=((64, 64), (64, 64), (64, 32), (32, 16), (16,))),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
