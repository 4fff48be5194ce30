"""Image-to-Image Translation with Conditional Adversarial Networks (Isola, Zhu, Zhou, Efros 2016,
arXiv:1611.07004): pix2pix's U-Net generator, its PatchGAN discriminator and its objective.

Objective (sec. 3.1, eq. 1-4): G*(x) = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G), with
  L_cGAN = E_{x,y}[log D(x, y)] + E_x[log(1 - D(x, G(x)))]   (D sees the input x beside y or G(x))
  L_L1   = E_{x,y}[|y - G(x)|_1],  lambda = 100 (sec. 4; `L1_WEIGHT`).
Sec. 3.3: G maximises log D(x, G(x)) (the non-saturating loss of Goodfellow et al.), and D's
objective is divided by 2 "which slows down the rate at which D learns relative to G"
(`discriminator_loss`). The paper's noise z is only dropout, applied at training and test time.

Generator (sec. 3.2.1, appendix 6.1.1): an encoder C64-C128-C256-C512-C512-C512-C512-C512 (Ck:
4x4 convolution, stride 2, BatchNorm, LeakyReLU 0.2; no BatchNorm on the first C64) and a decoder
CD512-CD512-CD512-C512-C256-C128-C64 (4x4 transposed convolution, stride 2, BatchNorm, ReLU;
CDk adds dropout 0.5), each decoder layer's input concatenated with the mirrored encoder layer's
output (the skips; the paper lists the doubled widths CD1024, ...), then a transposed convolution
to the output channels and tanh. `num_downs` encoder layers halve a 2^num_downs image to 1x1:
`pix2pix_unet256` is the paper's 256x256 generator (8 downs), `pix2pix_unet64` a 64x64 one (6).

Discriminator (sec. 3.2.2, appendix 6.1.2): the 70x70 PatchGAN C64-C128-C256-C512 then a
convolution to one channel, each output a real/fake logit for one 70x70 patch of the input (the
condition and the image concatenated on channels): `patch_logits [B, H', W']`, 30x30 for 256x256
inputs. Its receptive field is `receptive_field(num_layers)` (1 layer: 16, 3: 70, 5: 286).

Counts: both follow the reference code (pytorch-CycleGAN-and-pix2pix, `networks.py`: `unet_256`
and `basic` D with ngf = ndf = 64, batch norm), whose convolutions before a BatchNorm have no bias
(the norm's shift replaces it) and whose innermost encoder layer (2x2 -> 1x1) has no norm. The
closed forms of those layers are the reference counts: `pix2pix_unet256` (3 in, 3 out channels)
54,413,955, the "54.414 M" the reference prints for G; `patchgan_70` on 6 input channels
2,768,705 (6,208 + 131,328 + 524,800 + 2,098,176 + 8,193), the "2.769 M" it prints for D. The
exact figures quoted in the issue's brief, 54,414,080 and 2,769,729, are 125 and 1,024 more; no
arrangement of these layers' biases and norms gives either (no torch here to build the reference).

`norm='instance'` (parameter-free instance normalisation, convolutions with biases, as the
reference's `--norm instance`) is CycleGAN's variant of the same discriminator.

Departures: the reference applies dropout in the three blocks after the innermost; here it is on
the first three decoder layers, as the appendix's CD512-CD512-CD512 says (counts are the same).
Weights from N(0, 0.02), BatchNorm scales from N(1, 0.02), as the reference (sec. 6.2).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans import gan as gan_losses
from jaxpapers.gans.dcgan import WEIGHT_INIT, _batch_norm
from jaxpapers.nn.conv_transpose import ConvTranspose

_PAPER = ('Image-to-Image Translation with Conditional Adversarial Networks (Isola et al. 2016, '
          'arXiv:1611.07004)')
_REFERENCE = 'pytorch-CycleGAN-and-pix2pix networks.py'
L1_WEIGHT = 100.0
NORMS = ('batch', 'instance')


def norm_layer(norm: str, train: bool) -> Callable[[jax.Array], jax.Array]:
  """BatchNorm (PyTorch's defaults and the reference's N(1, 0.02) scales) or parameter-free
  instance normalisation (PyTorch's InstanceNorm2d, affine=False)."""
  if norm == 'batch':
    return _batch_norm(train)
  if norm == 'instance':
    return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False)
  raise ValueError(f'norm={norm!r}; valid: {", ".join(NORMS)}')


def down_conv(features: int, use_bias: bool, strides: int = 2, padding: int = 1) -> nn.Conv:
  """A 4x4 convolution, padding 1 unless told (stride 2 then halves the size)."""
  return nn.Conv(features, (4, 4), strides=(strides, strides),
                 padding=((padding, padding), (padding, padding)), use_bias=use_bias,
                 kernel_init=WEIGHT_INIT)


def spectral(layer: nn.Module, enabled: bool, train: bool) -> Callable[[jax.Array], jax.Array]:
  """`layer` with its weights divided by their largest singular value when `enabled` (spectral
  normalisation, Miyato et al. 2018, arXiv:1802.05957, as SPADE's `spectral` norm options):
  flax's `nn.SpectralNorm`, one power iteration per call, whose vector `u` (and the estimate
  `sigma`) live in the 'batch_stats' collection and move only in training (`update_stats`).
  The layer's parameters keep their names and count."""
  if not enabled:
    return layer
  return lambda x: nn.SpectralNorm(layer)(x, update_stats=train)


def generator_loss(fake_logits: jax.Array, fake: jax.Array, target: jax.Array,
                   l1_weight: float = L1_WEIGHT, gan_weight: float = 1.0) -> jax.Array:
  """-E[log D(x, G(x))] + lambda E|y - G(x)|_1 (eq. 4 with sec. 3.3's non-saturating G loss).

  `gan_weight=0` is the paper's "L1 alone" ablation (Table 1). The L1 term is the mean absolute
  error per pixel and channel, as the reference's nn.L1Loss.
  """
  return gan_weight * gan_losses.non_saturating_generator_loss(fake_logits) + l1_weight * jnp.mean(
      jnp.abs(target - fake))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Half the binary cross-entropy of D over every patch (sec. 3.3: D's objective divided by 2)."""
  return 0.5 * gan_losses.discriminator_loss(real_logits, fake_logits)


class UNetGenerator(nn.Module):
  """Images [B, S, S, C_in] with S = 2^num_downs * k -> images [B, S, S, out_channels] in [-1, 1]."""
  out_channels: int = 3
  features: int = 64  # ngf
  num_downs: int = 8
  dropout: float = 0.5
  num_dropout: int = 3  # decoder layers with dropout, from the innermost

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.shape[1] % 2 ** self.num_downs or x.shape[2] % 2 ** self.num_downs:
      raise ValueError(f'a U-Net of {self.num_downs} downsamplings needs sides divisible by '
                       f'{2 ** self.num_downs}; got {x.shape[1:3]}')
    widths = [self.features * min(2 ** i, 8) for i in range(self.num_downs)]
    skips = []
    h = x
    for i, width in enumerate(widths):
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      h = down_conv(width, use_bias=False)(h)
      if 0 < i < self.num_downs - 1:  # none on the first (C64) and the innermost layers
        h = norm_layer('batch', train)(h)
      skips.append(h)
    h = skips.pop()
    for depth, i in enumerate(reversed(range(self.num_downs))):
      h = nn.relu(h)
      width = widths[i - 1] if i > 0 else self.out_channels
      # Kernel 4, stride 2, PyTorch padding 1: padding 4 - 1 - 1 of the dilated input.
      h = ConvTranspose(width, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=i == 0,
                        kernel_init=WEIGHT_INIT)(h)
      if i == 0:
        return jnp.tanh(h)
      h = norm_layer('batch', train)(h)
      if depth < self.num_dropout:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
      h = jnp.concatenate([skips.pop(), h], axis=-1)
    raise AssertionError('unreachable')


def receptive_field(num_layers: int) -> int:
  """The input patch one PatchGAN output sees: num_layers stride-2 and two stride-1 4x4 layers."""
  field = 1
  for stride in reversed([2] * num_layers + [1, 1]):
    field = (field - 1) * stride + 4
  return field


class PatchGAN(nn.Module):
  """Images [B, H, W, C] (pix2pix: condition and image concatenated) -> patch logits [B, H', W'].

  `return_features=True` also returns every hidden layer's activations (for SPADE's feature
  matching loss). SPADE's discriminator (`spade.MultiscaleDiscriminator`) is this network with
  `padding=2`, `spectral_norm=True` on the normalised layers and `norm_bias=False`, as NVlabs/SPADE's
  NLayerDiscriminator (its `n_layers_D = 4` counts the first layer: `num_layers=3` here).
  """
  features: int = 64  # ndf
  num_layers: int = 3  # stride-2 layers; 3 gives the 70x70 receptive field
  norm: str = 'batch'
  padding: int = 1  # of every 4x4 convolution
  spectral_norm: bool = False  # on the normalised (middle) layers
  norm_bias: bool = True  # biases before instance norm (never before batch norm)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
    use_bias = self.norm != 'batch' and self.norm_bias
    h = nn.leaky_relu(down_conv(self.features, use_bias=True, padding=self.padding)(x), 0.2)
    features = [h]
    for n in range(1, self.num_layers + 1):
      stride = 2 if n < self.num_layers else 1
      conv = down_conv(self.features * min(2 ** n, 8), use_bias=use_bias, strides=stride,
                       padding=self.padding)
      h = spectral(conv, self.spectral_norm, train)(h)
      h = nn.leaky_relu(norm_layer(self.norm, train)(h), 0.2)
      features.append(h)
    logits = down_conv(1, use_bias=True, strides=1, padding=self.padding)(h)[..., 0]
    return (logits, features) if return_features else logits


zoo.register('pix2pix_unet256', UNetGenerator, inputs=zoo.image_input(256, 256, 3), paper=_PAPER,
             apply_kwargs={'train': False}, reference_params=54_413_955,
             reference_source=f'closed form of {_REFERENCE} unet_256 (ngf 64, batch norm); it '
                              'prints 54.414 M')
zoo.register('patchgan_70', PatchGAN, inputs=zoo.image_input(256, 256, 6), paper=_PAPER,
             apply_kwargs={'train': False}, reference_params=2_768_705,
             reference_source=f'closed form of {_REFERENCE} basic D (n_layers 3, ndf 64, batch '
                              'norm) on 6 channels; it prints 2.769 M')
# Small presets for the 64x64 scenes (label maps of 6 classes -> RGB) on a CPU.
zoo.register('pix2pix_unet64', lambda: UNetGenerator(num_downs=6, features=16),
             inputs=zoo.image_input(64, 64, 6), paper=_PAPER, apply_kwargs={'train': False},
             reference_params=None, reference_source='')
zoo.register('patchgan_70_small', lambda: PatchGAN(features=16), inputs=zoo.image_input(64, 64, 9),
             paper=_PAPER, apply_kwargs={'train': False}, reference_params=None,
             reference_source='')
