"""SRResNet and SRGAN: "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
Network" (Ledig et al. 2016, arXiv:1609.04802).

Fig. 4, the generator (SRResNet): a 9x9 convolution of 64 channels and PReLU, B = 16 residual
blocks (3x3 conv, BN, PReLU, 3x3 conv, BN, plus the identity), a 3x3 conv and BN added to the
first layer's output (a long skip), two upsampling blocks (3x3 conv to 256 channels, sub-pixel
shuffle x2 after Shi et al. 2016, arXiv:1609.05158, PReLU) for x4, and a 9x9 convolution to RGB.
Inputs are LR images in [0, 1], outputs HR images in [-1, 1] (sec. 3.2: "we scaled the range of
the LR input images to [0, 1] and for the HR images to [-1, 1]"); the last layer is linear.
The discriminator: a 3x3 conv of 64 channels and LeakyReLU (alpha 0.2), seven conv-BN-LeakyReLU
layers (64 s2, 128, 128 s2, 256, 256 s2, 512, 512 s2), Dense(1024), LeakyReLU, Dense(1) (a logit:
the sigmoid is in the loss).
Losses (sec. 2.2, eq. 3-6): the perceptual loss l_X + 1e-3 l_Gen, with l_X the VGG loss on
phi_5,4 (`perceptual.feature_loss(..., 'hw')`, eq. 5, on feature maps divided by 12.75, sec. 3.2)
and l_Gen = -log D(G(I_LR)) (the non-saturating loss of `jaxpapers/gans/gan.py`); SRResNet-MSE is
trained on the pixel MSE, and SRGAN starts from it (sec. 3.2: "we employed the trained MSE-based
SRResNet network as initialization for the generator"). Sub-pixel shuffle (`pixel_shuffle`) is
PyTorch's PixelShuffle: out[h r + i, w r + j, c] = in[h, w, c r^2 + i r + j] (channel-major, which
converted torch weights need; TensorFlow's depth_to_space orders the channels (i, j, c) instead).

Parameter counts. `srresnet_x4`: 1,549,462, as the commonly quoted SRResNet x4 of 64 channels
(e.g. the PyTorch reimplementations): 15,616 (9x9 in) + 16 x (2 x 36,928 + 2 x 128 BN) + 36,928 +
128 + 2 x 147,712 (upsampling) + 15,555 (9x9 out) = 1,549,443, plus 19 PReLU slopes: the count
holds only for torch's default PReLU with one shared slope per layer (`channel_shared=True`). The
paper does not say; He et al.'s channel-wise PReLU (`channel_shared=False`) gives 64 slopes per
layer, 1,550,659 in all. `srgan_discriminator` (96x96 crops, sec. 3.2): 4,685,376 in the eight
convolutions + 3,712 BN + 18,874,368 + 1,024 (Dense(1024) on the 6x6x512 map) + 1,025 = 23,565,505,
counted from Fig. 4's layer list (the authors released no code); the dense layer, and so the count,
depends on the crop size.
Departures: none in the architecture; the offline experiments use 32x32 HR images from 8x8 inputs
instead of 96x96 ImageNet crops, and a small VGG-19-layout network for the VGG loss.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets import layers

ADVERSARIAL_WEIGHT = 1e-3  # sec. 2.2, eq. 3
VGG_LOSS_SCALE = 1.0 / 12.75  # sec. 3.2: feature maps rescaled so the VGG loss compares to the MSE
VGG_LOSS_LAYER = 'relu5_4'  # phi_5,4: after the 4th convolution before the 5th max pool


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
  """[B, H, W, C r^2] -> [B, H r, W r, C] with PyTorch's PixelShuffle channel order."""
  b, h, w, channels = x.shape
  if channels % (factor * factor):
    raise ValueError(f'{channels} channels do not shuffle into factor {factor}')
  c = channels // (factor * factor)
  x = x.reshape(b, h, w, c, factor, factor)
  return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * factor, w * factor, c)


class PReLU(nn.Module):
  """max(0, x) + a min(0, x) with learned slope(s) a, initialised to 0.25 (He et al. 2015)."""
  channel_shared: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (1,) if self.channel_shared else (x.shape[-1],)
    slope = self.param('slope', nn.initializers.constant(0.25), shape)
    return jnp.where(x >= 0, x, slope * x)


def _conv(features: int, kernel: int, stride: int = 1, name: str | None = None) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                 name=name)


class SRResNet(nn.Module):
  """LR images [B, h, w, 3] in [0, 1] -> HR images [B, h s, w s, 3] in [-1, 1], s = 2^upsamplings."""
  features: int = 64
  num_blocks: int = 16
  upsamplings: int = 2
  channel_shared: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    f = self.features
    x = skip = PReLU(self.channel_shared, name='prelu_in')(_conv(f, 9, name='conv_in')(x))
    for i in range(self.num_blocks):
      h = _conv(f, 3, name=f'block{i}_conv1')(x)
      h = PReLU(self.channel_shared, name=f'block{i}_prelu')(
          layers.batch_norm(train, f'block{i}_bn1')(h))
      h = layers.batch_norm(train, f'block{i}_bn2')(_conv(f, 3, name=f'block{i}_conv2')(h))
      x = x + h
    x = skip + layers.batch_norm(train, 'bn_mid')(_conv(f, 3, name='conv_mid')(x))
    for i in range(self.upsamplings):
      x = pixel_shuffle(_conv(4 * f, 3, name=f'up{i}_conv')(x), 2)
      x = PReLU(self.channel_shared, name=f'up{i}_prelu')(x)
    return _conv(3, 9, name='conv_out')(x)


class Discriminator(nn.Module):
  """HR images [B, H, W, 3] in [-1, 1] -> logits [B] of "real"."""
  features: int = 64
  dense: int = 1024

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    f = self.features
    x = nn.leaky_relu(_conv(f, 3, name='conv0')(x), 0.2)
    plan = ((f, 2), (2 * f, 1), (2 * f, 2), (4 * f, 1), (4 * f, 2), (8 * f, 1), (8 * f, 2))
    for i, (width, stride) in enumerate(plan, start=1):
      x = layers.batch_norm(train, f'bn{i}')(_conv(width, 3, stride, name=f'conv{i}')(x))
      x = nn.leaky_relu(x, 0.2)
    x = nn.leaky_relu(nn.Dense(self.dense, name='dense')(x.reshape(x.shape[0], -1)), 0.2)
    return nn.Dense(1, name='logit')(x)[:, 0]


_PAPER = ('Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network '
          '(Ledig et al. 2016, arXiv:1609.04802)')
_TRAIN_FALSE = {'train': False}
zoo.register('srresnet_x4', SRResNet, inputs=zoo.image_input(24, 24, 3), apply_kwargs=_TRAIN_FALSE,
             paper=_PAPER, reference_params=1_549_462,
             reference_source='SRResNet x4 reimplementations (torch PReLU, one slope per layer)')
zoo.register('srgan_discriminator', Discriminator, inputs=zoo.image_input(96, 96, 3),
             apply_kwargs=_TRAIN_FALSE, paper=_PAPER, reference_params=23_565_505,
             reference_source='Fig. 4 layer list on 96x96 crops, counted by hand (no official code)')
zoo.register('srresnet_x4_tiny', lambda: SRResNet(features=8, num_blocks=2),
             inputs=zoo.image_input(8, 8, 3), apply_kwargs=_TRAIN_FALSE, paper=_PAPER,
             reference_params=None, reference_source='none: a small variant for tests')
zoo.register('srgan_discriminator_tiny', lambda: Discriminator(features=8, dense=16),
             inputs=zoo.image_input(32, 32, 3), apply_kwargs=_TRAIN_FALSE, paper=_PAPER,
             reference_params=None, reference_source='none: a small variant for tests')
