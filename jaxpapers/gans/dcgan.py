"""Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks
(Radford, Metz, Chintala 2015, arXiv:1511.06434).

The architecture guidelines of section 3, as the networks here follow them:
  * no pooling: D downsamples with strided convolutions (kernel 4, stride 2, padding 1), G
    upsamples with fractionally-strided (transposed) convolutions of the same shape; G's first
    layer maps z (as a 1x1 map) to 4x4 with a kernel-4 transposed convolution, D's last reduces
    4x4 to one logit with a kernel-4 convolution, and there are no fully connected hidden layers;
  * BatchNorm in both networks except G's output layer and D's input layer;
  * ReLU in G with tanh at the output; LeakyReLU with slope 0.2 in D;
  * section 4: weights from N(0, 0.02) (BatchNorm scales from N(1, 0.02), as the reference code);
    Adam with learning rate 2e-4 and beta1 = 0.5 (the experiment's config).
The widths double at each halving of the resolution from `features` (ngf / ndf): for 64x64 images
G goes 8*ngf (4x4), 4*ngf, 2*ngf, ngf, then the image, as the paper's figure 1 (with 1024 at 4x4
there) and the widely used reference code (pytorch/examples dcgan, ngf = ndf = 64: 512 at 4x4).
Convolutions have no bias (the BatchNorm shift replaces it), so `dcgan_64_generator` and
`dcgan_64_discriminator` have exactly that reference's 3,576,704 and 2,765,568 parameters. Image
sizes 4 * 2^k work: `dcgan_32_*` for the 32x32 shapes, and 8x8 for the digits.

`use_batch_norm=False` gives the critic WGAN-GP needs (its gradient penalty is per example, which
batch statistics would couple); its convolutions then have biases.

The transposed convolutions are `jaxpapers.nn.conv_transpose.ConvTranspose`: the same parameters
and outputs as flax's, computed as stride-1 convolutions of the output phases, because XLA:CPU's
kernel gradient of flax's dilated form is 30x slower than the rest of the layer. D's strided
convolutions are `StridedConv`s (flax's `Conv`, with the input gradient by phases too).

Departures: the paper's transposed-convolution padding is not given; here it is the reference's
(padding 1, i.e. `lax.conv_transpose` padding k - 1 - 1 = 2), so shapes and counts match it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans.gan import z_input
from jaxpapers.nn.batch_norm import BatchNorm
from jaxpapers.nn.conv_transpose import ConvTranspose, StridedConv

_PAPER = ('Unsupervised Representation Learning with Deep Convolutional Generative Adversarial '
          'Networks (Radford et al. 2015, arXiv:1511.06434)')

WEIGHT_INIT = nn.initializers.normal(0.02)


def _scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _batch_norm(train: bool) -> BatchNorm:
  # PyTorch's defaults, as the reference: running-average momentum 0.1, epsilon 1e-5.
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   scale_init=_scale_init)


def num_halvings(image_size: int) -> int:
  """k with image_size = 4 * 2^k: the strided layers between the 4x4 map and the image."""
  k = (image_size // 4).bit_length() - 1
  if image_size < 4 or 4 * 2 ** k != image_size:
    raise ValueError(f'DCGAN image sizes are 4 * 2^k; got {image_size}')
  return k


class Generator(nn.Module):
  """z [B, z_dim] -> images [B, S, S, C] in [-1, 1]."""
  image_size: int = 64
  channels: int = 3
  features: int = 64  # ngf
  z_dim: int = 100

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    k = num_halvings(self.image_size)
    if k == 0:
      raise ValueError('DCGAN generators need image_size >= 8')
    h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    # 1x1 -> 4x4: a kernel-4 transposed convolution with no padding (padding k - 1 = 3 here).
    width = self.features * 2 ** max(k - 1, 0)
    h = ConvTranspose(width, (4, 4), padding=((3, 3), (3, 3)), use_bias=False,
                         kernel_init=WEIGHT_INIT)(h)
    h = nn.relu(_batch_norm(train)(h))
    for i in range(k):
      last = i == k - 1
      width = self.channels if last else self.features * 2 ** (k - 2 - i)
      h = ConvTranspose(width, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False,
                           kernel_init=WEIGHT_INIT)(h)
      h = jnp.tanh(h) if last else nn.relu(_batch_norm(train)(h))
    return h


class Discriminator(nn.Module):
  """images [B, S, S, C] -> logits [B] (a critic's scores for WGAN-GP)."""
  features: int = 64  # ndf
  use_batch_norm: bool = True

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    k = num_halvings(images.shape[1])
    h = images
    for i in range(k):
      h = StridedConv(self.features * 2 ** i, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                      use_bias=not self.use_batch_norm, kernel_init=WEIGHT_INIT,
                      name=f'Conv_{i}')(h)
      if self.use_batch_norm and i > 0:  # None on the input layer.
        h = _batch_norm(train)(h)
      h = nn.leaky_relu(h, 0.2)
    h = nn.Conv(1, (4, 4), padding='VALID', use_bias=not self.use_batch_norm,
                kernel_init=WEIGHT_INIT, name=f'Conv_{k}')(h)
    return h.reshape(h.shape[0])


_REFERENCE = 'pytorch/examples dcgan main.py (nz 100, ngf = ndf = 64, nc 3)'
zoo.register('dcgan_64_generator', Generator, inputs=z_input(100), paper=_PAPER,
             apply_kwargs={'train': False}, reference_params=3_576_704, reference_source=_REFERENCE)
zoo.register('dcgan_64_discriminator', Discriminator, inputs=zoo.image_input(64, 64, 3),
             paper=_PAPER, apply_kwargs={'train': False}, reference_params=2_765_568,
             reference_source=_REFERENCE)
# 32x32: ConvT 100->256 k4, 256->128, 128->64, 64->3 and BN scales+biases of 256, 128, 64.
zoo.register('dcgan_32_generator', lambda: Generator(image_size=32), inputs=z_input(100),
             paper=_PAPER, apply_kwargs={'train': False},
             reference_params=16 * (100 * 256 + 256 * 128 + 128 * 64 + 64 * 3) + 2 * (256 + 128 + 64),
             reference_source='closed form (the 64x64 network less one stage)')
# Conv 3->64, 64->128, 128->256, 256->1 (k4) and BN of 128, 256.
zoo.register('dcgan_32_discriminator', Discriminator, inputs=zoo.image_input(32, 32, 3),
             paper=_PAPER, apply_kwargs={'train': False},
             reference_params=16 * (3 * 64 + 64 * 128 + 128 * 256 + 256) + 2 * (128 + 256),
             reference_source='closed form (the 64x64 network less one stage)')
