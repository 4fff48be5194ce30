"""Alias-Free Generative Adversarial Networks (Karras, Aittala, Laine, Harkonen, Hellsten, Lehtinen,
Aila 2021, arXiv:2106.12423): StyleGAN3, configurations T and R.

Every feature map is a sampled band-limited continuous signal (sec. 2); each layer keeps the signal
below its Nyquist rate so the network is equivariant to sub-pixel translation (config T) and, with
1x1 convolutions and radial filters, to rotation (config R):
  * input: Fourier features instead of the learned 4x4 constant (sec. 3.1, `style_layers.
    FourierFeatures`), translated and rotated by an affine map of the first w, and by a user
    transform (how EQ-T translates the input, `SynthesisNetwork(..., transform=)`);
  * synthesis layer (sec. 3.2, fig. 4b): modulated/demodulated convolution (`style_layers.
    modulated_conv`, k - 1 padding so the output keeps the whole support), bias, then the filtered
    non-linearity (`filtered_lrelu`): upsample by 2 (zero insertion and a Kaiser-windowed sinc
    low-pass at the input cutoff, gain up^2), LeakyReLU(0.2) * sqrt(2) at twice the output rate,
    clamped to +-256, then low-pass at the output cutoff and keep every `down`-th sample;
  * the filter schedule (sec. 3.2, fig. 4c, appendix F; `filter_schedule`): N = 14 layers plus
    tRGB; cutoff f_c and minimum stopband f_t move geometrically from f_c,0 = 2, f_t,0 = 2^2.1 to
    f_c,N = R / 2, f_t,N = 2^0.3 f_c,N over the first N - 2 layers, the last two are critically
    sampled (their cutoff is R / 2, the Nyquist rate of the R x R output); sampling rate s = the
    power of two >= 2 f_t (at most R); transition half-width f_h = max(f_t, s / 2) - f_c; each map
    carries a margin of 10 samples (sec. 3.2), dropped at the last two layers; widths
    min(channel_base / 2 / f_c, channel_max);
  * filters: `scipy.signal.firwin` (Kaiser window, the design of the reference code), separable 1-D
    taps (6 per unit of the lower rate, so 12 for a factor-2 resampling); config R's non-critical
    downsampling filters are radial (jinc times a Kaiser window in both axes);
  * per-layer input normalisation by a moving average of E[x^2] (`magnitude_ema`, sec. 3.2 /
    appendix F; decay `magnitude_ema_beta`, 0.999 by default, which the reference's train.py sets
    to 0.5^(batch / 20,000)), no noise inputs, no skip tRGBs, output times 0.25; the mapping
    network has 2 layers (train.py's default for the StyleGAN3 configs), `stylegan2.MappingNetwork`.
The discriminator is StyleGAN2's (`stylegan2.Discriminator`), as in the reference.

`reference_counts` is the closed form of the parameter count of NVlabs stylegan3's
networks_stylegan3.py structure (affine w_dim * in + in, weight out * in * k^2, bias out; input
C0^2 + 4 w_dim + 4; buffers such as freqs, phases and magnitude_ema are not parameters); the layer
names L{i}_{size}_{channels} of `stylegan3_t_generator` (L0_36_512 ... L7_276_323 ... L14_1024_3)
are the reference's printed layer names at 1024x1024.

Departures: the reference's pre-normalisation of w and s inside the modulated convolution is left
out (a scalar rescale that demodulation cancels; it only guards fp16); no fp16; the up/down filters
are applied as two separable `style_layers.upfirdn2d` passes (the reference's filtered_lrelu
reference path, `_filtered_lrelu_ref`, computes the same).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal
import scipy.special

from jaxpapers import zoo
from jaxpapers.gans import stylegan2
from jaxpapers.gans.gan import z_input
from jaxpapers.gans.style_layers import (EqualDense, FourierFeatures, SQRT2, modulated_conv,
                                         upfirdn2d)

_PAPER = 'Alias-Free Generative Adversarial Networks (Karras et al. 2021, arXiv:2106.12423)'


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> np.ndarray | None:
  """A Kaiser-windowed sinc low-pass (scipy.signal.firwin: cutoff and transition `width` in the
  units of the sampling rate fs), 1-D; radial: jinc(2 f_c r) times outer(kaiser, kaiser), 2-D; None
  for a single tap (no filtering)."""
  if numtaps == 1:
    return None
  if not radial:
    return scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs).astype(np.float32)
  x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
  r = np.hypot(*np.meshgrid(x, x))
  with np.errstate(invalid='ignore', divide='ignore'):
    f = np.where(r > 0, scipy.special.j1(2 * cutoff * np.pi * r) / (np.pi * r), cutoff)
  beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
  w = np.kaiser(numtaps, beta)
  f = f * np.outer(w, w)
  return (f / f.sum()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One synthesis layer's signal geometry (sizes in samples, rates in samples per image)."""
  in_channels: int
  out_channels: int
  in_size: int
  out_size: int
  in_rate: int
  out_rate: int
  in_cutoff: float
  out_cutoff: float
  in_half_width: float
  out_half_width: float
  is_torgb: bool
  is_critical: bool


def filter_schedule(resolution: int, channels: int = 3, channel_base: int = 32768,
                    channel_max: int = 512, num_layers: int = 14, num_critical: int = 2,
                    first_cutoff: float = 2.0, first_stopband: float = 2 ** 2.1,
                    last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10) -> dict:
  """Per layer 0..N (the input is layer 0's geometry, N is tRGB): cutoffs, stopbands,
  sampling_rates, half_widths, sizes, channels, as numpy arrays (sec. 3.2, fig. 4c)."""
  last_cutoff = resolution / 2
  last_stopband = last_cutoff * last_stopband_rel
  exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
  cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
  stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
  rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
  half_widths = np.maximum(stopbands, rates / 2) - cutoffs
  sizes = rates + margin_size * 2
  sizes[-2:] = resolution
  widths = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
  widths[-1] = channels
  return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=rates, half_widths=half_widths,
              sizes=sizes.astype(int), channels=widths.astype(int))


def layer_specs(schedule: dict, num_critical: int = 2) -> list[LayerSpec]:
  n = len(schedule['cutoffs']) - 1
  s = schedule
  specs = []
  for i in range(n + 1):
    p = max(i - 1, 0)
    specs.append(LayerSpec(
        in_channels=int(s['channels'][p]), out_channels=int(s['channels'][i]),
        in_size=int(s['sizes'][p]), out_size=int(s['sizes'][i]),
        in_rate=int(s['sampling_rates'][p]), out_rate=int(s['sampling_rates'][i]),
        in_cutoff=float(s['cutoffs'][p]), out_cutoff=float(s['cutoffs'][i]),
        in_half_width=float(s['half_widths'][p]), out_half_width=float(s['half_widths'][i]),
        is_torgb=i == n, is_critical=i >= n - num_critical))
  return specs


@dataclasses.dataclass(frozen=True)
class Resampling:
  up: int
  down: int
  up_filter: np.ndarray | None
  down_filter: np.ndarray | None
  padding: tuple[int, int, int, int]  # x0, x1, y0, y1 of the upsampled signal


def layer_resampling(spec: LayerSpec, conv_kernel: int = 3, filter_size: int = 6,
                     lrelu_upsampling: int = 2, radial: bool = False) -> Resampling:
  """The up/down factors, filters and padding that take the k - 1 padded convolution output of
  in_size + k - 1 samples to out_size samples, the non-linearity at rate max(in, out) * 2."""
  k = 1 if spec.is_torgb else conv_kernel
  tmp_rate = max(spec.in_rate, spec.out_rate) * (1 if spec.is_torgb else lrelu_upsampling)
  up = int(np.rint(tmp_rate / spec.in_rate))
  down = int(np.rint(tmp_rate / spec.out_rate))
  up_taps = filter_size * up if up > 1 and not spec.is_torgb else 1
  down_taps = filter_size * down if down > 1 and not spec.is_torgb else 1
  fu = design_lowpass_filter(up_taps, spec.in_cutoff, spec.in_half_width * 2, tmp_rate)
  fd = design_lowpass_filter(down_taps, spec.out_cutoff, spec.out_half_width * 2, tmp_rate,
                             radial=radial and not spec.is_critical)
  total = (spec.out_size - 1) * down + 1 - (spec.in_size + k - 1) * up + up_taps + down_taps - 2
  lo = (total + up) // 2  # the symmetric interpretation of sample positions (appendix C.3)
  hi = total - lo
  return Resampling(up, down, fu, fd, (lo, hi, lo, hi))


def _fir(x: jax.Array, f: np.ndarray | None, up: int = 1, down: int = 1,
         padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> jax.Array:
  """upfirdn2d with a separable 1-D filter (two passes) or a 2-D one; gain per axis for 1-D."""
  if f is None:
    f = np.ones((1,), np.float32)
  if f.ndim == 2:
    return upfirdn2d(x, f * gain, up=up, down=down, padding=padding)
  x0, x1, y0, y1 = padding
  g = np.sqrt(gain)
  x = upfirdn2d(x, (f * g)[None, :], up=up, padding=(x0, x1, 0, 0))
  return upfirdn2d(x, (f * g)[:, None], down=down, padding=(0, 0, y0, y1))


def filtered_lrelu(x: jax.Array, resampling: Resampling, bias: jax.Array, gain: float = SQRT2,
                   slope: float = 0.2, clamp: float | None = 256.0) -> jax.Array:
  """Fig. 4b's filtered non-linearity: bias, upsample (gain up^2), LeakyReLU * gain, clamp,
  low-pass and downsample."""
  r = resampling
  x = _fir(x + bias, r.up_filter, up=r.up, padding=r.padding, gain=r.up ** 2)
  x = jnp.where(x >= 0, x, x * slope) * gain
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return _fir(x, r.down_filter, down=r.down)


class SynthesisLayer(nn.Module):
  """Modulated convolution and the filtered non-linearity; tRGB: 1x1, no demodulation, linear."""
  spec: LayerSpec
  conv_kernel: int = 3
  use_radial_filters: bool = False
  magnitude_ema_beta: float = 0.999

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, update_emas: bool = False) -> jax.Array:
    spec = self.spec
    k = 1 if spec.is_torgb else self.conv_kernel
    magnitude = self.variable('stats', 'magnitude_ema', lambda: jnp.ones((), jnp.float32))
    if update_emas and self.is_mutable_collection('stats') and not self.is_initializing():
      current = jnp.mean(jnp.square(jax.lax.stop_gradient(x)))
      magnitude.value = current + self.magnitude_ema_beta * (magnitude.value - current)
    styles = EqualDense(spec.in_channels, bias_init=1.0, name='affine')(w)
    if spec.is_torgb:
      styles = styles / np.sqrt(spec.in_channels * k * k)
    weight = self.param('kernel', nn.initializers.normal(1.0),
                        (k, k, spec.in_channels, spec.out_channels))
    bias = self.param('bias', nn.initializers.zeros, (spec.out_channels,))
    x = modulated_conv(x * jax.lax.rsqrt(magnitude.value), weight, styles,
                       demodulate=not spec.is_torgb, padding=[(k - 1, k - 1)] * 2)
    resampling = layer_resampling(spec, k, radial=self.use_radial_filters)
    if spec.is_torgb:
      return filtered_lrelu(x, resampling, bias, gain=1.0, slope=1.0)
    return filtered_lrelu(x, resampling, bias)


class SynthesisNetwork(nn.Module):
  """ws [B, num_layers + 2, w_dim] -> images [B, R, R, C]; `transform` moves the input features."""
  resolution: int = 1024
  channels: int = 3
  channel_base: int = 32768
  channel_max: int = 512
  num_layers: int = 14
  num_critical: int = 2
  margin_size: int = 10
  output_scale: float = 0.25
  conv_kernel: int = 3
  use_radial_filters: bool = False
  magnitude_ema_beta: float = 0.999

  @property
  def num_ws(self) -> int:
    return self.num_layers + 2

  def schedule(self) -> dict:
    return filter_schedule(self.resolution, self.channels, self.channel_base, self.channel_max,
                           self.num_layers, self.num_critical, margin_size=self.margin_size)

  @nn.compact
  def __call__(self, ws: jax.Array, transform: jax.Array | None = None,
               update_emas: bool = False) -> jax.Array:
    s = self.schedule()
    x = FourierFeatures(int(s['channels'][0]), int(s['sizes'][0]), float(s['sampling_rates'][0]),
                        float(s['cutoffs'][0]), name='input')(ws[:, 0], transform)
    for i, spec in enumerate(layer_specs(s, self.num_critical)):
      x = SynthesisLayer(spec, self.conv_kernel, self.use_radial_filters, self.magnitude_ema_beta,
                         name=f'L{i}_{spec.out_size}_{spec.out_channels}')(x, ws[:, i + 1],
                                                                           update_emas)
    return x * self.output_scale


class Generator(stylegan2.Generator):
  """z -> images, StyleGAN2's interface (`mapping_ws`, `synthesize`) with the alias-free synthesis
  network; `synthesize(ws, transform)` translates/rotates the input (EQ-T, EQ-R)."""
  mapping_layers: int = 2
  num_layers: int = 14
  margin_size: int = 10
  conv_kernel: int = 3
  use_radial_filters: bool = False
  magnitude_ema_beta: float = 0.999

  def setup(self):
    self.mapping = stylegan2.MappingNetwork(w_dim=self.w_dim, num_layers=self.mapping_layers,
                                            w_avg_beta=0.998)
    self.synthesis = SynthesisNetwork(
        resolution=self.resolution, channels=self.channels, channel_base=self.channel_base,
        channel_max=self.channel_max, num_layers=self.num_layers, margin_size=self.margin_size,
        conv_kernel=self.conv_kernel, use_radial_filters=self.use_radial_filters,
        magnitude_ema_beta=self.magnitude_ema_beta)

  @property
  def num_ws(self) -> int:
    return self.num_layers + 2

  def synthesize(self, ws: jax.Array, transform: jax.Array | None = None) -> jax.Array:
    return self.synthesis(ws, transform)

  def __call__(self, z: jax.Array, truncation_psi: float = 1.0, update_w_avg: bool = False,
               train: bool = False) -> jax.Array:
    del train
    ws = self.mapping_ws(z, truncation_psi, update_w_avg=update_w_avg)
    return self.synthesis(ws, update_emas=update_w_avg)


def reference_counts(resolution: int, channels: int = 3, z_dim: int = 512, w_dim: int = 512,
                     mapping_layers: int = 2, channel_base: int = 32768, channel_max: int = 512,
                     num_layers: int = 14, margin_size: int = 10, conv_kernel: int = 3,
                     use_radial_filters: bool = False) -> int:
  """The generator's parameter count in networks_stylegan3.py's structure (filters and the radial
  option are buffers, not parameters)."""
  del use_radial_filters
  s = filter_schedule(resolution, channels, channel_base, channel_max, num_layers,
                      margin_size=margin_size)
  g = (z_dim * w_dim + w_dim) + (mapping_layers - 1) * (w_dim * w_dim + w_dim)
  c0 = int(s['channels'][0])
  g += c0 * c0 + w_dim * 4 + 4
  for spec in layer_specs(s):
    k = 1 if spec.is_torgb else conv_kernel
    i, o = spec.in_channels, spec.out_channels
    g += w_dim * i + i + o * i * k * k + o
  return g


# Configs T and R of the reference's train.py (--cfg=stylegan3-t / stylegan3-r): R doubles the
# generator's channel_base and channel_max and uses 1x1 convolutions and radial downsampling
# filters; the discriminator keeps --cbase / --cmax (32768 / 512).
CONFIG_R: dict = dict(conv_kernel=1, channel_base=65536, channel_max=1024, use_radial_filters=True)


def _register(name: str, resolution: int, source: str, d_kw: dict | None = None, **g_kw):
  d_kw = d_kw or dict(channel_base=32768, channel_max=512)
  g_count = reference_counts(resolution, **g_kw)
  d_count = stylegan2.reference_counts(resolution, **d_kw)[1]
  zoo.register(f'{name}_generator', lambda: Generator(resolution=resolution, **g_kw),
               inputs=z_input(g_kw.get('z_dim', 512)), paper=_PAPER, reference_params=g_count,
               reference_source=source)
  zoo.register(f'{name}_discriminator', lambda: stylegan2.Discriminator(**d_kw),
               inputs=zoo.image_input(resolution, resolution, g_kw.get('channels', 3), batch=4),
               paper=_PAPER, reference_params=d_count, reference_source=source)


_SOURCE = ('closed form of NVlabs stylegan3 networks_stylegan3.py (layer names and widths as its '
           'printed 1024x1024 synthesis network); D = networks_stylegan2.Discriminator')
_register('stylegan3_t', 1024, _SOURCE)
_register('stylegan3_r', 1024, _SOURCE, **CONFIG_R)
# For the CPU: 32x32 and 64x64, w 128, widths up to 128, 8 layers (6 + 2 critical); the
# discriminator of `stylegan2_32`.
SMALL: dict = dict(z_dim=128, w_dim=128, channel_base=4096, channel_max=128, num_layers=8)
_SMALL_D = dict(channel_base=2048, channel_max=128)
_register('stylegan3_t_32', 32, 'closed form (reference_counts)', _SMALL_D, **SMALL)
_register('stylegan3_t_64', 64, 'closed form (reference_counts)', _SMALL_D, **SMALL)

__all__: Sequence[str] = ('Generator', 'SynthesisNetwork', 'SynthesisLayer', 'filter_schedule',
                          'design_lowpass_filter', 'filtered_lrelu', 'reference_counts')
