"""Progressive Growing of GANs for Improved Quality, Stability, and Variation (Karras, Aila, Laine,
Lehtinen 2017, arXiv:1710.10196): ProGAN.

  * Progressive growing (sec. 2, fig. 2): both networks are built for the final resolution and run
    at the current one, `resolution`; while a new resolution 2r fades in, with alpha going 0 -> 1,
    G's image is (1 - alpha) * upsample(toRGB_r(x_r)) + alpha * toRGB_2r(block_2r(x_r))
    (nearest-neighbour upsampling), and D's features are (1 - alpha) * fromRGB_r(avgpool(x)) +
    alpha * block_2r(fromRGB_2r(x)) (`fade_in`).
  * Equalised learning rate (sec. 4.1), pixelwise feature normalisation after every generator
    convolution and of the latent (sec. 4.2), minibatch standard deviation before D's last block
    (sec. 3, group 4 as the reference code): `style_layers`.
  * Table 2's networks (CelebA-HQ 1024x1024): G: latent 512 -> "conv 4x4" (a dense layer to 4x4x512)
    -> conv 3x3, then per resolution upsample, two 3x3 convs, LeakyReLU(0.2); D mirrors it with
    1x1 fromRGB, two 3x3 convs and 2x2 average pooling per resolution, then minibatch stddev
    (513 channels), conv 3x3, conv 4x4 (valid, here the equal dense layer on the flattened 4x4x512
    map, the same weights), and a linear output. Widths min(8192 / 2^(log2 r - 1), 512): 512 up to
    32x32, then 256, 128, 64, 32, 16.
  * Loss: WGAN-GP with the drift term 0.001 E[D(x)^2] (appendix A.1, `wgan_gp.critic_loss`).

`reference_counts` is the closed form of those layers with every resolution's toRGB / fromRGB (the
reference code keeps them all for the fade-ins): G 23,079,115 and D 23,087,249 at 1024x1024, the
paper's "23.1M" for each (Table 2; its listing shows only the last toRGB / first fromRGB, 23,071,507
and 23,077,137, also 23.1M).

Departures: the equalised-lr gain sqrt(2) is the LeakyReLU's output gain (`style_layers.lrelu`)
instead of the weights' (the same network up to a reparameterised bias); the first dense layer
uses the plain He constant (the reference divides its gain by 4); no label conditioning.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans.gan import z_input
from jaxpapers.gans.style_layers import EqualConv, EqualDense, lrelu, minibatch_stddev, pixel_norm

_PAPER = ('Progressive Growing of GANs for Improved Quality, Stability, and Variation (Karras et '
          'al. 2017, arXiv:1710.10196)')


def log2(resolution: int) -> int:
  k = resolution.bit_length() - 1
  if resolution < 4 or 2 ** k != resolution:
    raise ValueError(f'ProGAN resolutions are powers of 2 >= 4; got {resolution}')
  return k


def channels_at(resolution: int, fmap_base: int = 8192, fmap_max: int = 512) -> int:
  return min(fmap_base // 2 ** (log2(resolution) - 1), fmap_max)


def upsample_nearest(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def fade_in(old: jax.Array, new: jax.Array, alpha: jax.Array | float) -> jax.Array:
  """(1 - alpha) old + alpha new: the residual blend of fig. 2 (b)."""
  return old + (new - old) * alpha


class Generator(nn.Module):
  """z [B, z_dim] -> images [B, r, r, C] at the current `resolution` (default the final one)."""
  resolution: int = 1024
  channels: int = 3
  z_dim: int = 512
  fmap_base: int = 8192
  fmap_max: int = 512

  def _ch(self, r: int) -> int:
    return channels_at(r, self.fmap_base, self.fmap_max)

  @nn.compact
  def __call__(self, z: jax.Array, resolution: int | None = None, alpha: jax.Array | float = 1.0,
               train: bool = False) -> jax.Array:
    del train
    target = resolution or self.resolution
    if log2(target) > log2(self.resolution):
      raise ValueError(f'resolution {target} above the network\'s {self.resolution}')
    c4 = self._ch(4)
    x = EqualDense(16 * c4, use_bias=False, name='b4_dense')(pixel_norm(z))
    x = x.reshape(z.shape[0], 4, 4, c4) + self.param('b4_dense_bias', nn.initializers.zeros, (c4,))
    x = pixel_norm(lrelu(x))
    x = pixel_norm(EqualConv(c4, 3, activation='lrelu', name='b4_conv')(x))
    # During init every resolution's block and toRGB are built, as the reference keeps them all.
    last = log2(self.resolution) if self.is_initializing() else log2(target)
    img = EqualConv(self.channels, 1, name='b4_torgb')(x)
    for k in range(3, last + 1):
      r = 2 ** k
      x = upsample_nearest(x)
      x = pixel_norm(EqualConv(self._ch(r), 3, activation='lrelu', name=f'b{r}_conv0')(x))
      x = pixel_norm(EqualConv(self._ch(r), 3, activation='lrelu', name=f'b{r}_conv1')(x))
      new = EqualConv(self.channels, 1, name=f'b{r}_torgb')(x)
      if r == target:
        img = fade_in(upsample_nearest(img), new, alpha)
      elif r < target:
        img = new
    return img


class Discriminator(nn.Module):
  """images [B, r, r, C] at any resolution up to the final one -> scores [B]."""
  resolution: int = 1024
  fmap_base: int = 8192
  fmap_max: int = 512
  mbstd_group_size: int = 4

  def _ch(self, r: int) -> int:
    return channels_at(r, self.fmap_base, self.fmap_max)

  @nn.compact
  def __call__(self, images: jax.Array, alpha: jax.Array | float = 1.0,
               train: bool = False) -> jax.Array:
    del train
    top = log2(images.shape[1])
    from_rgb = {k: EqualConv(self._ch(2 ** k), 1, activation='lrelu', name=f'b{2 ** k}_fromrgb')
                for k in range(2, log2(self.resolution) + 1)}
    if self.is_initializing():  # build every fromRGB, as the reference keeps them all
      small = images
      for k in range(top, 1, -1):
        from_rgb[k](small)
        small = avg_pool(small)
    x = from_rgb[top](images)
    for k in range(top, 2, -1):
      r = 2 ** k
      x = EqualConv(self._ch(r), 3, activation='lrelu', name=f'b{r}_conv0')(x)
      x = EqualConv(self._ch(r // 2), 3, activation='lrelu', name=f'b{r}_conv1')(x)
      x = avg_pool(x)
      if k == top:
        x = fade_in(from_rgb[k - 1](avg_pool(images)), x, alpha)
    c4 = self._ch(4)
    x = minibatch_stddev(x, self.mbstd_group_size)
    x = EqualConv(c4, 3, activation='lrelu', name='b4_conv')(x)
    x = EqualDense(c4, activation='lrelu', name='b4_conv4x4')(x.reshape(x.shape[0], -1))
    return EqualDense(1, name='b4_out')(x)[:, 0]


def reference_counts(resolution: int, channels: int = 3, z_dim: int = 512, fmap_base: int = 8192,
                     fmap_max: int = 512) -> tuple[int, int]:
  """(G, D) parameter counts of Table 2's layers with a toRGB / fromRGB at every resolution."""
  def ch(r):
    return channels_at(r, fmap_base, fmap_max)

  def conv(i, o, k=3):
    return i * o * k * k + o

  c4 = ch(4)
  g = z_dim * 16 * c4 + c4 + conv(c4, c4) + conv(c4, channels, 1)
  d = conv(c4 + 1, c4) + conv(c4, c4, 4) + c4 + 1 + conv(channels, c4, 1)
  for k in range(3, log2(resolution) + 1):
    r = 2 ** k
    g += conv(ch(r // 2), ch(r)) + conv(ch(r), ch(r)) + conv(ch(r), channels, 1)
    d += conv(ch(r), ch(r)) + conv(ch(r), ch(r // 2)) + conv(channels, ch(r), 1)
  return g, d


def _register(name: str, resolution: int, source: str, **kw):
  g_count, d_count = reference_counts(resolution, **kw)
  d_kw = {k: v for k, v in kw.items() if k in ('fmap_base', 'fmap_max')}
  zoo.register(f'{name}_generator', lambda: Generator(resolution=resolution, **kw),
               inputs=z_input(kw.get('z_dim', 512)), paper=_PAPER, reference_params=g_count,
               reference_source=source)
  zoo.register(f'{name}_discriminator', lambda: Discriminator(resolution=resolution, **d_kw),
               inputs=zoo.image_input(resolution, resolution, kw.get('channels', 3), batch=4),
               paper=_PAPER, reference_params=d_count, reference_source=source)


_register('progan_1024', 1024, 'Table 2 layers in closed form (paper: 23.1M each)')
# For the CPU: 32x32, widths 128 down to 64 at 32x32.
SMALL: dict = dict(z_dim=128, fmap_base=1024, fmap_max=128)
_register('progan_32', 32, 'closed form (reference_counts)', **SMALL)

__all__: Sequence[str] = ('Generator', 'Discriminator', 'fade_in', 'reference_counts')
