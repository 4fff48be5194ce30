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
starting size (`num_upsamplings=6`, the reference's `more` for Cityscapes, adds an up between the
two middle ResBlks: 64 times).

Spectral normalisation (sec. 4, appendix A; Miyato et al. 2018): the reference applies it where
its `spectral` norm options reach, which is not quite the paper's "all layers": in G the three
convolutions of every ResBlk (conv_0, conv_1 and the shortcut; not the first convolution, the SPADE
convolutions or the last one), in D the normalised middle layers of each PatchGAN (not the first and
last convolutions). `spectral_norm=True` follows the reference (`pix2pix.spectral`: flax's
`nn.SpectralNorm`, one power iteration per training call, its vector u in 'batch_stats', so it
travels in a player's model state like BatchNorm statistics).

Discriminator (`MultiscaleDiscriminator`, pix2pixHD's, the reference's `multiscale` with num_D = 2):
two PatchGANs with instance norm and no bias before it, 4x4 convolutions padded by 2, the first on
the label map concatenated with the image, the second on that input downsampled by a 3x3 average
pool of stride 2 (padding 1, padded pixels not counted); each has the reference's n_layers_D = 4
layers (64, 128, 256 stride 2, then 512 stride 1) before its one-channel output, and returns every
layer's features for feature matching.

Losses (sec. 4 / appendix A, the reference's `pix2pix_model.py`): the hinge GAN loss
(`hinge_discriminator_loss`, `hinge_generator_loss`) averaged over the scales, the discriminator
feature-matching loss of pix2pixHD (`feature_matching_loss`, weight 10: per scale the sum over
D's hidden layers of each layer's mean L1, averaged over the scales) and the VGG perceptual loss
(`vgg_loss`, weight 10, the reference's VGGLoss: L1 of VGG-19 relu1_1 ... relu5_1 features weighted
1/32, 1/16, 1/8, 1/4, 1). Adam(1e-4 G, 4e-4 D), the two-time-scale rule of appendix A, is the
experiment's config.

Parameter counts (spectral normalisation adds none; the parameter-free norms none), s = label
channels of the one-hot map (label_nc, + 1 for the instance edge map, + 1 for don't-care), nf = 64,
128 hidden SPADE channels:
  SPADE(c)        9 * 128 s + 128 + 2 (9 * 128 c + c)
  ResBlk(i, o)    m = min(i, o): 9 i m + m + 9 m o + o + SPADE(i) + SPADE(m)
                  [+ i o + SPADE(i), the shortcut, when i != o]
  G               9 s 16nf + 16nf (first convolution) + ResBlk(16nf, 16nf) x 3 + ResBlk(16nf, 8nf)
                  + ResBlk(8nf, 4nf) + ResBlk(4nf, 2nf) + ResBlk(2nf, nf) + 9 nf 3 + 3
  D, per scale    c = s + 3: 16 c 64 + 64 + 16 (64 * 128 + 128 * 256 + 256 * 512) + 16 * 512 + 1
The NVlabs code prints these totals when training, to 0.1 million: a training script in a public
fork quotes "SPADEGenerator ... 92.5 million" and "MultiscaleDiscriminator ... 5.6 million" for
`--label_nc 19 --no_instance` (s = 19), which the closed forms give, 92,538,819 and 5,566,594
(tests/translation/test_spade.py); no printed total of a paper setting was found. Presets:
`spade_generator_ade20k` 96,492,483 and `spade_discriminator_ade20k` 5,836,930 (ADE20K, 256x256,
150 classes + don't-care: s = 151), `spade_generator_cityscapes` 93,048,003 and
`spade_discriminator_cityscapes` 5,601,410 (Cityscapes 512x256, 35 classes + instance edges:
s = 36; the reference sets no don't-care label for Cityscapes, and its `more` upsampling: one more
2x step between the middle ResBlks, from a 4 x 8 map, at no parameter cost). These equal the closed
forms above; the reference itself (torch) was not run here.

Departures: the VGG loss's network is the experiment's `perceptual` loss network (offline: the
project's `vgg19_bn_mini` trained on the shapes images, not ImageNet VGG-19, which cannot be
downloaded here; converted torchvision VGG-19 weights can be given instead), fed images in [0, 1]
(ImageNet-normalised for converted weights) where the reference feeds its [-1, 1] images to
torchvision's VGG unnormalised. Flax's spectral norm also runs its power iteration at evaluation
(without storing it), where PyTorch's reuses the stored vectors. The paper's Adam beta2 is 0.999,
the reference's 0.9 (its authors call the paper wrong, NVlabs/SPADE issue 50); the config keeps
0.999. Only the label-map encoder variant of G (no VAE image encoder).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans.dcgan import WEIGHT_INIT
from jaxpapers.nn.batch_norm import BatchNorm
from jaxpapers.translation import pix2pix

_PAPER = ('Semantic Image Synthesis with Spatially-Adaptive Normalization (Park et al. 2019, '
          'arXiv:1903.07291)')
_REFERENCE = 'closed form of NVlabs/SPADE (module docstring)'
FEATURE_MATCHING_WEIGHT = 10.0
# The reference's VGGLoss: VGG-19 layers and their weights.
VGG_LAYER_WEIGHTS = {'relu1_1': 1.0 / 32, 'relu2_1': 1.0 / 16, 'relu3_1': 1.0 / 8,
                     'relu4_1': 1.0 / 4, 'relu5_1': 1.0}
UPSAMPLINGS = (5, 6)  # the reference's num_upsampling_layers 'normal' and 'more'


def hinge_discriminator_loss(real_outs: Sequence[jax.Array],
                             fake_outs: Sequence[jax.Array]) -> jax.Array:
  """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(m)))], each D output (one per scale) averaged over its
  elements, then averaged over the scales (the reference's GANLoss on a multi-scale D)."""
  return jnp.mean(jnp.stack([jnp.mean(nn.relu(1.0 - r)) + jnp.mean(nn.relu(1.0 + f))
                             for r, f in zip(real_outs, fake_outs, strict=True)]))


def hinge_generator_loss(fake_outs: Sequence[jax.Array]) -> jax.Array:
  """-E[D(G(m))], averaged over the scales."""
  return jnp.mean(jnp.stack([-jnp.mean(f) for f in fake_outs]))


def feature_matching_loss(real_features: Sequence[Sequence[jax.Array]],
                          fake_features: Sequence[Sequence[jax.Array]]) -> jax.Array:
  """pix2pixHD eq. 4 as SPADE's code: per scale, the sum over D's hidden layers of the mean
  |D_i(real) - D_i(fake)| (real features are constants), averaged over the scales."""
  per_scale = [sum(jnp.mean(jnp.abs(jax.lax.stop_gradient(r) - f))
                   for r, f in zip(real, fake, strict=True))
               for real, fake in zip(real_features, fake_features, strict=True)]
  return jnp.mean(jnp.stack(per_scale))


def vgg_loss(fake_features: Mapping[str, jax.Array],
             real_features: Mapping[str, jax.Array]) -> jax.Array:
  """sum_l w_l mean |phi_l(G(m)) - phi_l(x)| over `VGG_LAYER_WEIGHTS` (the reference's VGGLoss;
  real features are constants)."""
  return sum(w * jnp.mean(jnp.abs(fake_features[name] - jax.lax.stop_gradient(real_features[name])))
             for name, w in VGG_LAYER_WEIGHTS.items())


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
    normalised = BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                           momentum=0.9, epsilon=1e-5)(x)
    gamma, beta = SPADEModulation(x.shape[-1], self.hidden)(
        resize_labels(labels, x.shape[1], x.shape[2]))
    return normalised * (1.0 + gamma) + beta


class SPADEResBlock(nn.Module):
  """Figure 4 (right): the residual block whose every normalisation is SPADE."""
  features: int
  hidden: int = 128
  spectral_norm: bool = True  # on its three convolutions, as the reference

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    middle = min(x.shape[-1], self.features)

    def conv(features, **kwargs):
      return pix2pix.spectral(_conv(features, **kwargs), self.spectral_norm, train)

    def unit(h, width):
      return conv(width)(nn.leaky_relu(SPADE(self.hidden)(h, labels, train), 0.2))
    dx = unit(unit(x, middle), self.features)
    shortcut = x
    if x.shape[-1] != self.features:
      shortcut = conv(self.features, kernel=1, use_bias=False)(SPADE(self.hidden)(x, labels, train))
    return shortcut + dx


def _upsample(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class SPADEGenerator(nn.Module):
  """One-hot label maps [B, H, W, K] (H, W divisible by 2^num_upsamplings) -> images [B, H, W, 3]
  in [-1, 1]."""
  features: int = 64  # nf
  hidden: int = 128
  out_channels: int = 3
  spectral_norm: bool = True
  num_upsamplings: int = 5

  @nn.compact
  def __call__(self, labels: jax.Array, train: bool = False) -> jax.Array:
    if self.num_upsamplings not in UPSAMPLINGS:
      raise ValueError(f'num_upsamplings={self.num_upsamplings}; valid: {UPSAMPLINGS}')
    scale = 2 ** self.num_upsamplings
    height, width = labels.shape[1], labels.shape[2]
    if height % scale or width % scale:
      raise ValueError(f'SPADE generator sides must be divisible by {scale}; got {(height, width)}')
    nf = self.features

    def block(h, multiple):
      return SPADEResBlock(multiple * nf, self.hidden, self.spectral_norm)(h, labels, train)

    h = _conv(16 * nf)(resize_labels(labels, height // scale, width // scale))
    h = _upsample(block(h, 16))
    h = block(h, 16)
    if self.num_upsamplings == 6:
      h = _upsample(h)
    h = block(h, 16)
    for multiple in (8, 4, 2, 1):
      h = block(_upsample(h), multiple)
    return jnp.tanh(_conv(self.out_channels)(nn.leaky_relu(h, 0.2)))


def downsample(x: jax.Array) -> jax.Array:
  """3x3 average pooling, stride 2, padding 1, padded pixels not counted (the reference's
  `F.avg_pool2d(count_include_pad=False)`): the next scale's input."""
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)


class MultiscaleDiscriminator(nn.Module):
  """Label maps and images concatenated [B, H, W, C] -> per scale, patch logits [B, H_i, W_i]
  (and with `return_features`, per scale the list of hidden-layer activations)."""
  features: int = 64  # ndf
  num_scales: int = 2  # num_D
  num_layers: int = 3  # PatchGAN's layers after the first: the reference's n_layers_D = 4
  spectral_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
    logits, features = [], []
    for scale in range(self.num_scales):
      if scale:
        x = downsample(x)
      out, hidden = pix2pix.PatchGAN(self.features, self.num_layers, 'instance', padding=2,
                                     spectral_norm=self.spectral_norm, norm_bias=False,
                                     name=f'scale_{scale}')(x, train, return_features=True)
      logits.append(out)
      features.append(hidden)
    return (logits, features) if return_features else logits


_PRESETS = {  # name: (label channels s, height, width, num_upsamplings, G count, D count)
    'ade20k': (151, 256, 256, 5, 96_492_483, 5_836_930),
    'cityscapes': (36, 256, 512, 6, 93_048_003, 5_601_410),
}
for _data, (_s, _h, _w, _ups, _g, _d) in _PRESETS.items():
  zoo.register(f'spade_generator_{_data}', lambda ups=_ups: SPADEGenerator(num_upsamplings=ups),
               inputs=zoo.image_input(_h, _w, _s), paper=_PAPER, apply_kwargs={'train': False},
               reference_params=_g, reference_source=f'{_REFERENCE}: {_data}, s = {_s}')
  zoo.register(f'spade_discriminator_{_data}', MultiscaleDiscriminator,
               inputs=zoo.image_input(_h, _w, _s + 3), paper=_PAPER, apply_kwargs={'train': False},
               reference_params=_d, reference_source=f'{_REFERENCE}: {_data}, s + 3 = {_s + 3}')
# Small presets for the 64x64 scenes (6 label classes) on a CPU.
zoo.register('spade_generator_small', lambda: SPADEGenerator(features=8, hidden=32),
             inputs=zoo.image_input(64, 64, 6), paper=_PAPER, apply_kwargs={'train': False},
             reference_params=None, reference_source='')
zoo.register('spade_discriminator_small', lambda: MultiscaleDiscriminator(features=16),
             inputs=zoo.image_input(64, 64, 9), paper=_PAPER, apply_kwargs={'train': False},
             reference_params=None, reference_source='')
