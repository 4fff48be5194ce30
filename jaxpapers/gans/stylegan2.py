"""Analyzing and Improving the Image Quality of StyleGAN (Karras, Laine, Aittala, Hellsten, Lehtinen,
Aila 2019, arXiv:1912.04958): StyleGAN2.

Generator (sec. 2 and 4, fig. 7b, config F of table 1):
  * mapping network: z -> 2nd-moment normalisation -> 8 fully connected layers of 512 with
    LeakyReLU and the learning rate lowered 100x (lr_mul 0.01) -> w; one w per layer (`num_ws`), a
    running mean of w for the truncation trick w' = w_avg + psi (w - w_avg) (StyleGAN sec. 3.2);
  * synthesis: a learned 4x4 constant, per resolution two 3x3 modulated/demodulated convolutions
    (eqs. 1-3, `style_layers.modulated_conv`; the first upsamples by 2 with the [1, 3, 3, 1] FIR
    filter), each followed by scaled per-pixel noise (strength learned per layer, initialised 0),
    a bias and LeakyReLU * sqrt(2); the style s of each layer is an affine map of its w with bias 1;
  * the skip architecture (fig. 7b): a 1x1 modulated (not demodulated) tRGB per resolution whose
    image is added to the upsampled image of the resolution below.
Discriminator: the residual architecture (fig. 7c): fromRGB at the input resolution only, per
resolution conv 3x3, conv 3x3 + blur-downsample, a 1x1 downsampled skip without bias, the sum scaled
by 1/sqrt(2); the epilogue at 4x4 has minibatch stddev (group 4, one channel), conv 3x3, dense,
dense to one logit.
Losses (sec. 3 and appendix B): the non-saturating logistic loss, R1 on reals
(gamma / 2) E ||grad_x D(x)||^2 (`r1_penalty`), applied lazily every 16 minibatches with its weight
times 16 (sec. 3.1); path-length regularisation (eq. 4)
    E_{w, y ~ N(0, I)} (||J_w^T y||_2 - a)^2,
y scaled by 1/sqrt(H W) (the reference code), a an exponential moving average (decay 0.01) of the
lengths, weight 2, every 4 minibatches (`path_length_penalty`).

Channel widths: min(channel_base / resolution, channel_max): config F's 32768 / 512 gives 512 up
to 64x64, then 256, 128, 64, 32 at 1024x1024. `stylegan2_f_generator` and
`stylegan2_f_discriminator` have the parameter counts of NVlabs' stylegan2-ada-pytorch networks at
that configuration (its `cfg=stylegan2`), as that code's structure and per-layer summary give them
(mapping.fc* 262,656; b4.conv1 2,622,465 = affine 262,656 + weight 2,359,296 + bias 512 + noise
strength 1; b4.torgb 264,195); `reference_counts` spells the closed form out.

`fourier_input=True` replaces the constant by StyleGAN3's Fourier features (`style_layers.
FourierFeatures`, 4x4 samples at 4 per image, bandwidth 1.5): StyleGAN3's configuration B
(arXiv:2106.12423, sec. 3.1), which gives StyleGAN2 a continuous input that `synthesize(ws,
transform)` can translate, so the EQ-T metric applies to it (scripts/eq_t.py).

Departures: the upsampling convolution is zero insertion + FIR filter (gain 4) followed by the 3x3
modulated convolution, where the reference uses a transposed stride-2 convolution followed by the
filter: both are linear shift-invariant maps of the same parameters and agree away from the border.
Noise is random when an rng named 'noise' is given and absent otherwise (the reference's
noise_mode='none'); no fixed ('const') noise buffers. No mixed precision, no conditioning labels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.gans.gan import z_input
from jaxpapers.gans.style_layers import (EqualConv, EqualDense, FourierFeatures, lrelu,
                                         minibatch_stddev, modulated_conv, pixel_norm, setup_filter,
                                         upsample2d)

_PAPER = ('Analyzing and Improving the Image Quality of StyleGAN (Karras et al. 2019, '
          'arXiv:1912.04958)')

R1_INTERVAL = 16
PL_INTERVAL = 4
PL_WEIGHT = 2.0
PL_DECAY = 0.01
# The Fourier-feature input's bandwidth when it replaces the 4x4 constant (below the grid's Nyquist
# rate of 2 cycles per image, where StyleGAN3's amplitude fade-out would divide by zero).
FOURIER_BANDWIDTH = 1.5


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
  return min(channel_base // resolution, channel_max)


def log2(resolution: int) -> int:
  k = resolution.bit_length() - 1
  if resolution < 4 or 2 ** k != resolution:
    raise ValueError(f'StyleGAN resolutions are powers of 2 >= 4; got {resolution}')
  return k


class MappingNetwork(nn.Module):
  """z [B, z_dim] -> w [B, w_dim]; keeps the running mean of w in the 'stats' collection."""
  w_dim: int = 512
  num_layers: int = 8
  lr_mul: float = 0.01
  w_avg_beta: float = 0.995

  @nn.compact
  def __call__(self, z: jax.Array, update_w_avg: bool = False) -> jax.Array:
    x = pixel_norm(z)
    for i in range(self.num_layers):
      x = EqualDense(self.w_dim, lr_mul=self.lr_mul, activation='lrelu', name=f'fc{i}')(x)
    w_avg = self.variable('stats', 'w_avg', jnp.zeros, (self.w_dim,))
    if update_w_avg and self.is_mutable_collection('stats') and not self.is_initializing():
      mean = jnp.mean(jax.lax.stop_gradient(x), axis=0)
      w_avg.value = mean + self.w_avg_beta * (w_avg.value - mean)
    return x


def add_noise(module: nn.Module, x: jax.Array) -> jax.Array:
  """x + strength * N(0, 1) per pixel (shared over channels) when an rng 'noise' is given."""
  strength = module.param('noise_strength', nn.initializers.zeros, ())
  if not module.has_rng('noise'):
    return x
  noise = jax.random.normal(module.make_rng('noise'), x.shape[:3] + (1,), x.dtype)
  return x + noise * strength


class SynthesisLayer(nn.Module):
  """Modulated 3x3 convolution (optionally upsampling by 2), noise, bias, LeakyReLU."""
  features: int
  up: bool = False
  demodulate: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    styles = EqualDense(cin, bias_init=1.0, name='affine')(w)
    weight = self.param('kernel', nn.initializers.normal(1.0), (3, 3, cin, self.features))
    if self.up:
      x = upsample2d(x, setup_filter())
    x = modulated_conv(x, weight, styles, demodulate=self.demodulate)
    x = add_noise(self, x)
    return lrelu(x + self.param('bias', nn.initializers.zeros, (self.features,)))


class ToRGB(nn.Module):
  """1x1 modulated convolution without demodulation; styles scaled by 1/sqrt(fan_in)."""
  channels: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    styles = EqualDense(cin, bias_init=1.0, name='affine')(w) / np.sqrt(cin)
    weight = self.param('kernel', nn.initializers.normal(1.0), (1, 1, cin, self.channels))
    x = modulated_conv(x, weight, styles, demodulate=False)
    return x + self.param('bias', nn.initializers.zeros, (self.channels,))


class SynthesisNetwork(nn.Module):
  """ws [B, num_ws, w_dim] -> images [B, R, R, C] (skip architecture)."""
  resolution: int = 1024
  channels: int = 3
  channel_base: int = 32768
  channel_max: int = 512
  fourier_input: bool = False

  @property
  def num_ws(self) -> int:
    return 2 * (log2(self.resolution) - 1)

  @nn.compact
  def __call__(self, ws: jax.Array, transform: jax.Array | None = None) -> jax.Array:
    f = setup_filter()
    width = channels_at(4, self.channel_base, self.channel_max)
    if self.fourier_input:
      x = FourierFeatures(width, 4, 4.0, FOURIER_BANDWIDTH, name='input')(ws[:, 0], transform)
    else:
      if transform is not None:
        raise ValueError('a transform moves the Fourier-feature input only (fourier_input=True)')
      const = self.param('const', nn.initializers.normal(1.0), (4, 4, width))
      x = jnp.broadcast_to(const, (ws.shape[0], 4, 4, width))
    x = SynthesisLayer(width, name='b4_conv1')(x, ws[:, 0])
    img = ToRGB(self.channels, name='b4_torgb')(x, ws[:, 1])
    for i in range(1, log2(self.resolution) - 1):
      res = 4 * 2 ** i
      width = channels_at(res, self.channel_base, self.channel_max)
      x = SynthesisLayer(width, up=True, name=f'b{res}_conv0')(x, ws[:, 2 * i - 1])
      x = SynthesisLayer(width, name=f'b{res}_conv1')(x, ws[:, 2 * i])
      img = upsample2d(img, f) + ToRGB(self.channels, name=f'b{res}_torgb')(x, ws[:, 2 * i + 1])
    return img


class Generator(nn.Module):
  """z [B, z_dim] -> images [B, R, R, C] (about [-1, 1]; not squashed, as the reference).

  `mapping_ws` gives the per-layer ws (with truncation and, given a second z and a cutoff, style
  mixing: layers >= cutoff take the second z's w), `synthesize` draws images from ws."""
  resolution: int = 1024
  channels: int = 3
  z_dim: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  channel_base: int = 32768
  channel_max: int = 512
  fourier_input: bool = False

  def setup(self):
    self.mapping = MappingNetwork(w_dim=self.w_dim, num_layers=self.mapping_layers)
    self.synthesis = SynthesisNetwork(resolution=self.resolution, channels=self.channels,
                                      channel_base=self.channel_base, channel_max=self.channel_max,
                                      fourier_input=self.fourier_input)

  @property
  def num_ws(self) -> int:
    return 2 * (log2(self.resolution) - 1)

  def mapping_ws(self, z: jax.Array, truncation_psi: float = 1.0, z2: jax.Array | None = None,
                 cutoff: jax.Array | int | None = None, update_w_avg: bool = False) -> jax.Array:
    w = self.mapping(z, update_w_avg=update_w_avg)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], self.num_ws, self.w_dim))
    if z2 is not None:
      w2 = self.mapping(z2)
      layer = jnp.arange(self.num_ws)[None, :, None]
      cut = jnp.asarray(cutoff).reshape(-1, 1, 1)
      ws = jnp.where(layer < cut, ws, w2[:, None])
    w_avg = self.mapping.variables['stats']['w_avg']
    return w_avg + truncation_psi * (ws - w_avg)

  def synthesize(self, ws: jax.Array, transform: jax.Array | None = None) -> jax.Array:
    return self.synthesis(ws, transform)

  def __call__(self, z: jax.Array, truncation_psi: float = 1.0, update_w_avg: bool = False,
               train: bool = False) -> jax.Array:
    del train
    return self.synthesis(self.mapping_ws(z, truncation_psi, update_w_avg=update_w_avg))


class DiscriminatorBlock(nn.Module):
  """Residual block (fig. 7c): conv, conv + downsample, plus a downsampled 1x1 skip; / sqrt(2)."""
  tmp_features: int
  out_features: int
  from_rgb: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.from_rgb:
      x = EqualConv(self.tmp_features, 1, activation='lrelu', name='fromrgb')(x)
    gain = float(np.sqrt(0.5))
    y = EqualConv(self.out_features, 1, down=True, use_bias=False, gain=gain, name='skip')(x)
    x = EqualConv(self.tmp_features, 3, activation='lrelu', name='conv0')(x)
    x = EqualConv(self.out_features, 3, down=True, activation='lrelu', gain=gain, name='conv1')(x)
    return x + y


class Discriminator(nn.Module):
  """images [B, R, R, C] -> logits [B]."""
  channel_base: int = 32768
  channel_max: int = 512
  mbstd_group_size: int = 4

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    del train
    resolution = images.shape[1]
    x = images
    for k in range(log2(resolution), 2, -1):
      res = 2 ** k
      x = DiscriminatorBlock(channels_at(res, self.channel_base, self.channel_max),
                             channels_at(res // 2, self.channel_base, self.channel_max),
                             from_rgb=res == resolution, name=f'b{res}')(x)
    width = channels_at(4, self.channel_base, self.channel_max)
    x = minibatch_stddev(x, self.mbstd_group_size)
    x = EqualConv(width, 3, activation='lrelu', name='b4_conv')(x)
    x = EqualDense(width, activation='lrelu', name='b4_fc')(x.reshape(x.shape[0], -1))
    return EqualDense(1, name='b4_out')(x)[:, 0]


# The losses.

def r1_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """E_x ||grad_x D(x)||^2 over the real batch (the R1 term without gamma / 2)."""
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(real)
  return jnp.mean(jnp.sum(jnp.square(grads.reshape(real.shape[0], -1)), axis=-1))


def path_lengths(synthesize: Callable[[jax.Array], jax.Array], ws: jax.Array,
                 key: jax.Array) -> jax.Array:
  """||J_w^T y||_2 per example for y ~ N(0, I) / sqrt(H W): the gradient of sum(g(w) * y) with
  respect to ws [B, L, D], its squared norm summed over D and averaged over the L layers' ws."""
  images = synthesize(ws)
  noise = jax.random.normal(key, images.shape, images.dtype) / np.sqrt(
      images.shape[1] * images.shape[2])
  grads = jax.grad(lambda ws: jnp.sum(synthesize(ws) * noise))(ws)
  return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1))


def path_length_penalty(synthesize: Callable[[jax.Array], jax.Array], ws: jax.Array, key: jax.Array,
                        pl_mean: jax.Array, decay: float = PL_DECAY):
  """Eq. 4: (mean over the batch of (||J^T y|| - a)^2, the updated a, the lengths), a moving by
  `decay` towards the batch's mean length (the new a is used, as the reference)."""
  lengths = path_lengths(synthesize, ws, key)
  new_mean = pl_mean + decay * (jnp.mean(jax.lax.stop_gradient(lengths)) - pl_mean)
  return jnp.mean(jnp.square(lengths - new_mean)), new_mean, lengths


# Parameter counts of the reference structure, in closed form.

def reference_counts(resolution: int, channels: int = 3, z_dim: int = 512, w_dim: int = 512,
                     mapping_layers: int = 8, channel_base: int = 32768,
                     channel_max: int = 512) -> tuple[int, int]:
  """(G, D) parameter counts of stylegan2-ada-pytorch's networks.py at this configuration:
  FullyConnectedLayer = in * out + out, SynthesisLayer = affine (w_dim * in + in) + in * out * 9
  + out + 1, ToRGB = affine + in * C + C, Conv2dLayer = in * out * k^2 (+ out)."""
  def ch(r):
    return channels_at(r, channel_base, channel_max)

  def dense(i, o):
    return i * o + o

  def layer(i, o):
    return dense(w_dim, i) + i * o * 9 + o + 1

  def torgb(i):
    return dense(w_dim, i) + i * channels + channels

  g = dense(z_dim, w_dim) + (mapping_layers - 1) * dense(w_dim, w_dim)
  g += ch(4) * 16 + layer(ch(4), ch(4)) + torgb(ch(4))
  d = 0
  for k in range(3, log2(resolution) + 1):
    r = 2 ** k
    g += layer(ch(r // 2), ch(r)) + layer(ch(r), ch(r)) + torgb(ch(r))
    tmp, out = ch(r), ch(r // 2)
    d += (channels * tmp + tmp if r == resolution else 0)
    d += tmp * tmp * 9 + tmp + tmp * out * 9 + out + tmp * out
  c4 = ch(4)
  d += (c4 + 1) * c4 * 9 + c4 + dense(c4 * 16, c4) + dense(c4, 1)
  return g, d


# The totals a stylegan2-ada-pytorch training log prints at 1024x1024 (its summary tables):
# Discriminator 29,012,513; Generator 28,794,124 with the 2-layer mapping network of cfg=auto, so
# 30,370,060 with config F's 8 layers (6 more fc layers of 262,656). tests/gans check the closed form
# against these figures.
OFFICIAL_F_COUNTS = (30_370_060, 29_012_513)
_REFERENCE = ('NVlabs stylegan2-ada-pytorch networks.py at cfg=stylegan2 (config F): G 30,370,060, '
              'D 29,012,513 (its printed summary)')


def _register(name: str, resolution: int, source: str, **kw):
  g_kw = dict(kw)
  d_kw = {k: v for k, v in kw.items() if k in ('channel_base', 'channel_max')}
  g_count, d_count = reference_counts(resolution, **kw)
  zoo.register(f'{name}_generator', lambda: Generator(resolution=resolution, **g_kw),
               inputs=z_input(kw.get('z_dim', 512)), paper=_PAPER, reference_params=g_count,
               reference_source=source)
  zoo.register(f'{name}_discriminator', lambda: Discriminator(**d_kw),
               inputs=zoo.image_input(resolution, resolution, kw.get('channels', 3), batch=4),
               paper=_PAPER, reference_params=d_count, reference_source=source)


SMALL: dict[str, int] = dict(z_dim=128, w_dim=128, mapping_layers=2, channel_base=2048,
                             channel_max=128)
_register('stylegan2_f', 1024, _REFERENCE)
# For the CPU: 32x32, widths 64 (at 32x32) to 128, a 2-layer mapping network (ADA's CIFAR setup
# uses 2 layers).
_register('stylegan2_32', 32, 'closed form (reference_counts)', **SMALL)
_register('stylegan2_16', 16, 'closed form (reference_counts)', **SMALL)

__all__: Sequence[str] = ('Generator', 'Discriminator', 'r1_penalty', 'path_length_penalty')
