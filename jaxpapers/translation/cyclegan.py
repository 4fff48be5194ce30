"""Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks (Zhu, Park,
Isola, Efros 2017, arXiv:1703.10593): the ResNet generator and CycleGAN's losses.

Objective (sec. 3, eq. 3): two mappings G: X -> Y and F: Y -> X with discriminators D_Y and D_X,
  L(G, F, D_X, D_Y) = L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda L_cyc(G, F),
  L_cyc = E_x |F(G(x)) - x|_1 + E_y |G(F(y)) - y|_1   (eq. 2, `cycle_loss`), lambda = 10.
Sec. 4 (training details): the GAN terms are least-squares losses (Mao et al. 2016): G minimises
E[(D(G(x)) - 1)^2], D minimises E[(D(y) - 1)^2] + E[D(G(x))^2], divided by 2 for D
(`lsgan_generator_loss`, `lsgan_discriminator_loss`); D is shown a history of the last 50
generated images (`jaxpapers.train.buffers.ImagePool`); sec. 5.2 (photo generation from
paintings) adds the identity loss E_y |G(y) - y|_1 + E_x |F(x) - x|_1 weighted 0.5 lambda
(`identity_loss`, `IDENTITY_WEIGHT`, as the reference's lambda_identity 0.5 times lambda).
Each L1 is a mean over pixels and channels, as the reference's nn.L1Loss.

Generator (sec. 4 and appendix 7.2, after Johnson et al. 2016): c7s1-64, d128, d256, R256 x
`num_blocks`, u128, u64, c7s1-3: a 7x7 convolution after reflection padding 3, two 3x3 stride-2
convolutions, residual blocks of two 3x3 convolutions (reflection padding 1; instance norm; ReLU
between them, none after the sum), two 3x3 stride-1/2 transposed convolutions, then a 7x7
convolution and tanh; every convolution but the last is followed by instance norm and ReLU.
6 blocks for 128x128 images, 9 for 256x256 and up. Instance norm has no parameters (PyTorch's
InstanceNorm2d), so every convolution has a bias: `cyclegan_resnet_9blocks` has the reference
code's (pytorch-CycleGAN-and-pix2pix `resnet_9blocks`, ngf 64) 11,378,179 parameters and
`cyclegan_resnet_6blocks` its 7,837,699.

The discriminator is pix2pix's 70x70 PatchGAN with instance norm, unconditional (3 channels):
`cyclegan_patchgan_70`, the reference's 2,764,737.

Departures: none in the networks; the experiment's small presets shrink ngf for a CPU.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans.dcgan import WEIGHT_INIT
from jaxpapers.nn.conv_transpose import ConvTranspose
from jaxpapers.translation.pix2pix import PatchGAN, norm_layer

_PAPER = ('Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks '
          '(Zhu et al. 2017, arXiv:1703.10593)')
_REFERENCE = 'pytorch-CycleGAN-and-pix2pix networks.py'
CYCLE_WEIGHT = 10.0
IDENTITY_WEIGHT = 0.5  # times CYCLE_WEIGHT
POOL_SIZE = 50


def lsgan_discriminator_loss(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  """(E[(D(y) - 1)^2] + E[D(G(x))^2]) / 2."""
  return 0.5 * (jnp.mean((real_out - 1.0) ** 2) + jnp.mean(fake_out ** 2))


def lsgan_generator_loss(fake_out: jax.Array) -> jax.Array:
  """E[(D(G(x)) - 1)^2]."""
  return jnp.mean((fake_out - 1.0) ** 2)


def cycle_loss(x: jax.Array, x_reconstructed: jax.Array, y: jax.Array,
               y_reconstructed: jax.Array) -> jax.Array:
  """E|F(G(x)) - x|_1 + E|G(F(y)) - y|_1 (eq. 2), each a mean over pixels and channels."""
  return jnp.mean(jnp.abs(x_reconstructed - x)) + jnp.mean(jnp.abs(y_reconstructed - y))


def identity_loss(x: jax.Array, f_of_x: jax.Array, y: jax.Array, g_of_y: jax.Array) -> jax.Array:
  """E|G(y) - y|_1 + E|F(x) - x|_1: each mapping should leave images of its target domain alone."""
  return jnp.mean(jnp.abs(g_of_y - y)) + jnp.mean(jnp.abs(f_of_x - x))


def reflect_pad(x: jax.Array, width: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (width, width), (width, width), (0, 0)), mode='reflect')


class ResidualBlock(nn.Module):
  """x + [pad, conv3, IN, ReLU, pad, conv3, IN](x) (Johnson et al.'s block without the final ReLU)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    h = nn.Conv(width, (3, 3), padding='VALID', kernel_init=WEIGHT_INIT)(reflect_pad(x, 1))
    h = nn.relu(norm_layer('instance', False)(h))
    h = nn.Conv(width, (3, 3), padding='VALID', kernel_init=WEIGHT_INIT)(reflect_pad(h, 1))
    return x + norm_layer('instance', False)(h)


class ResNetGenerator(nn.Module):
  """Images [B, H, W, C] (H, W divisible by 4) -> images [B, H, W, out_channels] in [-1, 1]."""
  out_channels: int = 3
  features: int = 64  # ngf
  num_blocks: int = 9

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # Instance norm behaves the same in training and evaluation.
    def conv_norm_relu(h):
      return nn.relu(norm_layer('instance', False)(h))
    h = nn.Conv(self.features, (7, 7), padding='VALID', kernel_init=WEIGHT_INIT)(reflect_pad(x, 3))
    h = conv_norm_relu(h)
    for i in (1, 2):  # d128, d256
      h = nn.Conv(self.features * 2 ** i, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                  kernel_init=WEIGHT_INIT)(h)
      h = conv_norm_relu(h)
    for _ in range(self.num_blocks):
      h = ResidualBlock()(h)
    for i in (1, 0):  # u128, u64
      # PyTorch's kernel 3, stride 2, padding 1, output_padding 1: the dilated input padded (1, 2).
      h = ConvTranspose(self.features * 2 ** i, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)),
                        kernel_init=WEIGHT_INIT)(h)
      h = conv_norm_relu(h)
    h = nn.Conv(self.out_channels, (7, 7), padding='VALID', kernel_init=WEIGHT_INIT)(
        reflect_pad(h, 3))
    return jnp.tanh(h)


_SOURCE = f'{_REFERENCE} resnet_{{}}blocks, ngf 64'
zoo.register('cyclegan_resnet_9blocks', ResNetGenerator, inputs=zoo.image_input(256, 256, 3),
             paper=_PAPER, reference_params=11_378_179, reference_source=_SOURCE.format(9))
zoo.register('cyclegan_resnet_6blocks', lambda: ResNetGenerator(num_blocks=6),
             inputs=zoo.image_input(128, 128, 3), paper=_PAPER, reference_params=7_837_699,
             reference_source=_SOURCE.format(6))
# 3*64*16+64 + 64*128*16+128 + 128*256*16+256 + 256*512*16+512 + 512*16+1 (instance norm: biases).
zoo.register('cyclegan_patchgan_70', lambda: PatchGAN(norm='instance'),
             inputs=zoo.image_input(256, 256, 3), paper=_PAPER, reference_params=2_764_737,
             reference_source=f'{_REFERENCE} basic D (n_layers 3, ndf 64, instance norm); it '
                              'prints 2.765 M')
# Small presets for 32x32 images on a CPU.
zoo.register('cyclegan_resnet_6blocks_small', lambda: ResNetGenerator(num_blocks=6, features=16),
             inputs=zoo.image_input(32, 32, 3), paper=_PAPER, reference_params=None,
             reference_source='')
zoo.register('cyclegan_patchgan_small', lambda: PatchGAN(features=16, num_layers=2, norm='instance'),
             inputs=zoo.image_input(32, 32, 3), paper=_PAPER, reference_params=None,
             reference_source='')
