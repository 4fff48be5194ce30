"""A Style-Based Generator Architecture for Generative Adversarial Networks (Karras, Laine, Aila
2018, arXiv:1812.04948): StyleGAN (v1).

Generator (sec. 2, fig. 1b):
  * mapping network f: z -> w, 8 fully connected layers of 512, lr x 0.01 (`stylegan2.
    MappingNetwork`, the same network), one w per layer, the truncation trick (sec. 3.2) and style
    mixing (sec. 3.1) through `stylegan2.Generator.mapping_ws`;
  * synthesis g: a learned 4x4x512 constant (initialised to ones); per layer, after the
    convolution: per-pixel noise times a learned per-channel factor (B in fig. 1b, initialised 0),
    bias, LeakyReLU(0.2), then AdaIN (eq. 1)

        AdaIN(x_i, y) = y_s,i (x_i - mu(x_i)) / sigma(x_i) + y_b,i,

    y = (y_s, y_b) an affine map of w ("A", equalised lr; y_s = 1 + A_s(w) so styles start at the
    identity); per resolution: nearest upsampling, conv 3x3, the [1, 2, 1] blur (sec. 2, following
    Zhang 2019), epilogue, conv 3x3, epilogue; 1x1 toRGB. Widths as ProGAN (`progan.channels_at`:
    512 up to 32x32, then 256 ... 16 at 1024).
  * style mixing regularisation (sec. 3.1): for a fraction (90%) of training images two latents,
    the switch at a layer chosen uniformly (`mixing_cutoffs`; layer >= cutoff takes z2's w).
The discriminator and loss are ProGAN's (the paper keeps them); see `progan.Discriminator`.

`stylegan_1024_generator` counts 26,219,627 parameters with a toRGB at every resolution (the
reference code builds them all for progressive growing): the paper's "26.2M trainable parameters,
compared to 23.1M in the traditional generator" (sec. 2; `reference_counts` is the closed form).

Departures: no progressive growing here (the generator runs at its final resolution; ProGAN's
growing is in `progan.py`); the reference's fused upsampling convolution at >= 128x128 is the same
linear map as nearest upsampling followed by the convolution, used at every resolution. The
inherited `fourier_input` field of `stylegan2.Generator` is unused.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans import progan, stylegan2
from jaxpapers.gans.gan import z_input
from jaxpapers.gans.style_layers import EqualConv, EqualDense, lrelu, setup_filter, upfirdn2d

_PAPER = ('A Style-Based Generator Architecture for Generative Adversarial Networks (Karras et al. '
          '2018, arXiv:1812.04948)')

MIXING_PROB = 0.9


def adain(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Eq. 1 on x [B, H, W, C] with styles scale, bias [B, C]: each channel of each example
  normalised to zero mean and unit variance over its pixels, then scaled and shifted."""
  x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
  x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + eps)
  return x * scale[:, None, None, :] + bias[:, None, None, :]


def mixing_cutoffs(key: jax.Array, batch: int, num_ws: int, prob: float = MIXING_PROB) -> jax.Array:
  """Per example the first layer that takes the second latent's w: uniform in [1, num_ws) with
  probability `prob`, else num_ws (no mixing)."""
  mix_key, cut_key = jax.random.split(key)
  cut = jax.random.randint(cut_key, (batch,), 1, num_ws)
  return jnp.where(jax.random.uniform(mix_key, (batch,)) < prob, cut, num_ws)


class LayerEpilogue(nn.Module):
  """Noise (per-channel strength), bias, LeakyReLU, AdaIN with the styles of w."""

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    c = x.shape[-1]
    strength = self.param('noise_strength', nn.initializers.zeros, (c,))
    if self.has_rng('noise'):
      x = x + jax.random.normal(self.make_rng('noise'), x.shape[:3] + (1,), x.dtype) * strength
    x = lrelu(x + self.param('bias', nn.initializers.zeros, (c,)))
    styles = EqualDense(2 * c, name='style')(w)
    return adain(x, 1.0 + styles[:, :c], styles[:, c:])


class SynthesisNetwork(nn.Module):
  """ws [B, num_ws, w_dim] -> images [B, R, R, C]."""
  resolution: int = 1024
  channels: int = 3
  fmap_base: int = 8192
  fmap_max: int = 512

  @nn.compact
  def __call__(self, ws: jax.Array) -> jax.Array:
    def ch(r):
      return progan.channels_at(r, self.fmap_base, self.fmap_max)

    blur = setup_filter((1, 2, 1))
    const = self.param('const', nn.initializers.ones, (4, 4, ch(4)))
    x = jnp.broadcast_to(const, (ws.shape[0], 4, 4, ch(4)))
    x = LayerEpilogue(name='b4_epilogue0')(x, ws[:, 0])
    x = LayerEpilogue(name='b4_epilogue1')(EqualConv(ch(4), 3, use_bias=False, name='b4_conv')(x),
                                           ws[:, 1])
    # Every resolution's toRGB is built, as the reference keeps them for progressive growing.
    img = EqualConv(self.channels, 1, name='b4_torgb')(x)
    for k in range(3, progan.log2(self.resolution) + 1):
      r = 2 ** k
      x = EqualConv(ch(r), 3, use_bias=False, name=f'b{r}_conv0')(progan.upsample_nearest(x))
      x = LayerEpilogue(name=f'b{r}_epilogue0')(upfirdn2d(x, blur, padding=(1, 1, 1, 1)),
                                                ws[:, 2 * k - 4])
      x = EqualConv(ch(r), 3, use_bias=False, name=f'b{r}_conv1')(x)
      x = LayerEpilogue(name=f'b{r}_epilogue1')(x, ws[:, 2 * k - 3])
      img = EqualConv(self.channels, 1, name=f'b{r}_torgb')(x)
    return img


class Generator(stylegan2.Generator):
  """z -> images with StyleGAN2's interface (`mapping_ws` with truncation and mixing,
  `synthesize`), the v1 synthesis network and ProGAN's widths (fmap_base, fmap_max)."""
  fmap_base: int = 8192
  fmap_max: int = 512

  def setup(self):
    self.mapping = stylegan2.MappingNetwork(w_dim=self.w_dim, num_layers=self.mapping_layers)
    self.synthesis = SynthesisNetwork(resolution=self.resolution, channels=self.channels,
                                      fmap_base=self.fmap_base, fmap_max=self.fmap_max)

  def synthesize(self, ws: jax.Array) -> jax.Array:
    return self.synthesis(ws)


def reference_counts(resolution: int, channels: int = 3, z_dim: int = 512, w_dim: int = 512,
                     mapping_layers: int = 8, fmap_base: int = 8192, fmap_max: int = 512) -> int:
  """The generator's parameters: mapping, constant, per layer conv (no bias) + noise strength C +
  bias C + style (w_dim * 2C + 2C), every toRGB (C * channels + channels)."""
  def ch(r):
    return progan.channels_at(r, fmap_base, fmap_max)

  def epilogue(c):
    return 2 * c + w_dim * 2 * c + 2 * c

  g = z_dim * w_dim + w_dim + (mapping_layers - 1) * (w_dim * w_dim + w_dim)
  c4 = ch(4)
  g += 16 * c4 + 2 * epilogue(c4) + c4 * c4 * 9 + c4 * channels + channels
  for k in range(3, progan.log2(resolution) + 1):
    r = 2 ** k
    g += ch(r // 2) * ch(r) * 9 + ch(r) * ch(r) * 9 + 2 * epilogue(ch(r))
    g += ch(r) * channels + channels
  return g


def _register(name: str, resolution: int, source: str, **kw):
  zoo.register(f'{name}_generator', lambda: Generator(resolution=resolution, **kw),
               inputs=z_input(kw.get('z_dim', 512)), paper=_PAPER,
               reference_params=reference_counts(resolution, **kw), reference_source=source)


_register('stylegan_1024', 1024, 'closed form of sec. 2 / the reference layers (paper: 26.2M)')
_register('stylegan_32', 32, 'closed form (reference_counts)', z_dim=128, w_dim=128,
          mapping_layers=4, fmap_base=1024, fmap_max=128)

__all__: Sequence[str] = ('Generator', 'SynthesisNetwork', 'adain', 'mixing_cutoffs')
