"""Semantic Image Synthesis with Spatially-Adaptive Normalization (Park, Liu, Wang, Zhu 2019,
arXiv:1903.07291): SPADE, the SPADE residual block, the SPADE generator and its losses.

SPADE (sec. 3, eq. 1): activations h [B, H, W, C] are normalised per channel with batch statistics
and no learned affine parameters, then modulated per pixel by gamma and beta computed from the
semantic label map m (one-hot, resized to H x W by nearest neighbour):
  out = (h - mu_c) / sigma_c * (1 + gamma_c,y,x(m)) + beta_c,y,x(m),
with gamma and beta two 3x3 convolutions of a shared 3x3 convolution (`hidden` channels, ReLU) of
m (figure 2; appendix A: 128 hidden channels). The reference code (NVlabs/SPADE,
`normalization.py`) scales by 1 + gamma, as here. Because the convolutions are zero-padded, a
constant label map gives spatially constant gamma and beta except within two pixels of the border.

SPADE ResBlk (figure 4): two [SPADE, LeakyReLU 0.2, 3x3 conv] units with min(c_in, c_out) channels
in the middle, and a learned shortcut [SPADE, 1x1 conv without bias] when c_in != c_out.

Generator (figure 4 and appendix A, the reference's default `num_upsampling_layers=normal`): the
label map downsampled to (H / 32, W / 32) and a 3x3 convolution to 16 nf channels (the variant
without the image encoder, as the reference without --use_vae), then ResBlk(16nf), up, ResBlk(16nf)
x 2, up, ResBlk(8nf), up, ResBlk(4nf), up, ResBlk(2nf), up, ResBlk(nf), LeakyReLU, a 3x3
convolution to RGB and tanh; 'up' is 2x nearest-neighbour upsampling, so images are 32 times the
starting size.

Losses (sec. 4 / appendix A): the hinge GAN loss (`hinge_discriminator_loss`,
`hinge_generator_loss`) and the discriminator feature-matching loss of pix2pixHD (`feature_matching
_loss`, weight 10), the discriminator being pix2pix's PatchGAN (with instance norm) on the label map
concatenated with the image.

Departures: no spectral normalisation (the paper applies it to every layer of G and D), no VGG
perceptual loss (no ImageNet VGG weights offline) and a single-scale discriminator (the paper uses
two scales, each a PatchGAN with 4 layers); Adam(1e-4 G, 4e-4 D, beta 0, 0.999), the two-time-scale
rule of appendix A, is the experiment's config. Only small presets are registered: no parameter
count of the paper-size generator could be checked here against NVlabs/SPADE.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans.dcgan import WEIGHT_INIT

_PAPER = ('Semantic Image Synthesis with Spatially-Adaptive Normalization (Park et al. 2019, '
          'arXiv:1903.07291)')
FEATURE_MATCHING_WEIGHT = 10.0
NUM_UPSAMPLINGS = 5


def hinge_discriminator_loss(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(m)))]."""
  return jnp.mean(nn.relu(1.0 - real_out)) + jnp.mean(nn.relu(1.0 + fake_out))


def hinge_generator_loss(fake_out: jax.Array) -> jax.Array:
  """-E[D(G(m))]."""
  return -jnp.mean(fake_out)


def feature_matching_loss(real_features, fake_features) -> jax.Array:
  """Sum over D's hidden layers of the mean |D_i(real) - D_i(fake)| (pix2pixHD eq. 4, as SPADE's
  code: each layer's L1 averaged over its elements; real features are constants)."""
  return sum(jnp.mean(jnp.abs(jax.lax.stop_gradient(r) - f))
             for r, f in zip(real_features, fake_features))


def resize_labels(labels: jax.Array, height: int, width: int) -> jax.Array:
  """One-hot label maps [B, H0, W0, K] -> [B, height, width, K] by nearest neighbour.

  Downsampling by whole factors keeps every f-th pixel from the first, as PyTorch's
  `F.interpolate(mode='nearest')` in the reference does (pixel floor(i * f)); it is a strided
  slice, far quicker to compile than a general resize, which other sizes use.
  """
  h0, w0 = labels.shape[1], labels.shape[2]
  if h0 % height == 0 and w0 % width == 0:
    return labels[:, ::h0 // height, ::w0 // width]
  return jax.image.resize(labels, (labels.shape[0], height, width, labels.shape[-1]), 'nearest')


def _conv(features: int, kernel: int = 3, use_bias: bool = True) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=use_bias,
                 kernel_init=WEIGHT_INIT)


class SPADEModulation(nn.Module):
  """Label maps [B, H, W, K] -> (gamma, beta), each [B, H, W, channels]."""
  channels: int
  hidden: int = 128

  @nn.compact
  def __call__(self, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    shared = nn.relu(_conv(self.hidden)(labels))
    return _conv(self.channels)(shared), _conv(self.channels)(shared)


class SPADE(nn.Module):
  """(activations [B, H, W, C], label maps [B, H0, W0, K]) -> modulated activations [B, H, W, C]."""
  hidden: int = 128

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    normalised = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                              momentum=0.9, epsilon=1e-5)(x)
    gamma, beta = SPADEModulation(x.shape[-1], self.hidden)(
        resize_labels(labels, x.shape[1], x.shape[2]))
    return normalised * (1.0 + gamma) + beta


class SPADEResBlock(nn.Module):
  """Figure 4 (right): the residual block whose every normalisation is SPADE."""
  features: int
  hidden: int = 128

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    middle = min(x.shape[-1], self.features)
    def unit(h, width):
      return _conv(width)(nn.leaky_relu(SPADE(self.hidden)(h, labels, train), 0.2))
    dx = unit(unit(x, middle), self.features)
    shortcut = x
    if x.shape[-1] != self.features:
      shortcut = _conv(self.features, kernel=1, use_bias=False)(SPADE(self.hidden)(x, labels, train))
    return shortcut + dx


def _upsample(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class SPADEGenerator(nn.Module):
  """One-hot label maps [B, H, W, K] (H, W divisible by 32) -> images [B, H, W, 3] in [-1, 1]."""
  features: int = 64  # nf
  hidden: int = 128
  out_channels: int = 3

  @nn.compact
  def __call__(self, labels: jax.Array, train: bool = False) -> jax.Array:
    scale = 2 ** NUM_UPSAMPLINGS
    height, width = labels.shape[1], labels.shape[2]
    if height % scale or width % scale:
      raise ValueError(f'SPADE generator sides must be divisible by {scale}; got {(height, width)}')
    nf = self.features
    h = _conv(16 * nf)(resize_labels(labels, height // scale, width // scale))
    h = SPADEResBlock(16 * nf, self.hidden)(h, labels, train)
    h = _upsample(h)
    h = SPADEResBlock(16 * nf, self.hidden)(h, labels, train)
    h = SPADEResBlock(16 * nf, self.hidden)(h, labels, train)
    for multiple in (8, 4, 2, 1):
      h = SPADEResBlock(multiple * nf, self.hidden)(_upsample(h), labels, train)
    return jnp.tanh(_conv(self.out_channels)(nn.leaky_relu(h, 0.2)))


# Small presets for the 64x64 scenes (6 label classes) on a CPU; not the paper's size (see above).
zoo.register('spade_generator_small', lambda: SPADEGenerator(features=8, hidden=32),
             inputs=zoo.image_input(64, 64, 6), paper=_PAPER, apply_kwargs={'train': False},
             reference_params=None, reference_source='')
