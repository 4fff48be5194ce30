"""Layers shared by the progressive and style-based GANs (Karras et al. 2017-2021).

  * Equalised learning rate (ProGAN, Karras, Aila, Laine, Lehtinen 2017, arXiv:1710.10196, sec.
    4.1): weights are stored as N(0, 1) / lr_mul and scaled at run time by c = lr_mul / sqrt(fan_in)
    (He's constant), biases by lr_mul, so Adam's per-parameter step moves every layer at the same
    relative speed (`EqualDense`, `EqualConv`).
  * Pixelwise feature normalisation (ProGAN sec. 4.2): b = a / sqrt(mean_j a_j^2 + 1e-8)
    (`pixel_norm`).
  * Minibatch standard deviation (ProGAN sec. 3, StyleGAN2's form): the std over groups of G
    examples, averaged over features, appended as one more channel (`minibatch_stddev`).
  * FIR resampling (StyleGAN2, Karras et al. 2019, arXiv:1912.04958, after Zhang 2019): upsample
    by zero insertion, pad, convolve with a filter f, keep every `down`-th sample (`upfirdn2d`, the
    semantics of scipy.signal.upfirdn in two dimensions; the filter is applied as a convolution,
    i.e. flipped, as scipy does).
  * Weight modulation and demodulation (StyleGAN2 sec. 2.2, eqs. 1 and 3): w'_ijk = s_i w_ijk,
    w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps) (`modulated_conv`). It is computed as the
    reference's non-fused path: the input is scaled by s, convolved with the shared kernel, and the
    output scaled by the demodulation coefficients, which equals convolving with w'' per example.
  * Fourier-feature input (StyleGAN3, Karras et al. 2021, arXiv:2106.12423, sec. 3.1): a
    continuous, translatable and rotatable replacement of the learned constant
    (`FourierFeatures`); StyleGAN3 uses it and StyleGAN2 can (`stylegan2.Generator(fourier_input)`).

Images are NHWC; kernels are [kh, kw, in, out] (flax's layout).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SQRT2 = float(np.sqrt(2.0))


def lrelu(x: jax.Array, gain: float = SQRT2) -> jax.Array:
  """LeakyReLU(0.2) times sqrt(2), the reference's 'lrelu' with its default gain."""
  return nn.leaky_relu(x, 0.2) * gain


def pixel_norm(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
  """ProGAN eq. in sec. 4.2: each feature vector scaled to unit root mean square."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_channels: int = 1) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, C + num_channels]: per group of `group_size` examples (strided, as
  the reference: example b is in group b mod (B / G)), the std of each feature over the group,
  averaged over the features of each of `num_channels` channel groups and over pixels."""
  b, h, w, c = x.shape
  g = min(group_size, b)
  if b % g:
    raise ValueError(f'minibatch_stddev: batch {b} is not a multiple of the group size {g}')
  y = x.reshape(g, b // g, h, w, num_channels, c // num_channels)
  y = y - jnp.mean(y, axis=0)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [B/G, H, W, F, C/F]
  y = jnp.mean(y, axis=(1, 2, 4))  # [B/G, F]
  y = jnp.tile(y, (g, 1))[:, None, None, :]
  return jnp.concatenate([x, jnp.broadcast_to(y, (b, h, w, num_channels))], axis=-1)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), gain: float = 1.0) -> np.ndarray:
  """The separable 2-D FIR filter outer(taps, taps), normalised to sum `gain` (a numpy constant)."""
  f = np.asarray(taps, np.float32)
  f = np.outer(f, f) if f.ndim == 1 else f
  return (f / f.sum() * gain).astype(np.float32)


def upfirdn2d(x: jax.Array, f: np.ndarray, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0)) -> jax.Array:
  """Upsample [B, H, W, C] by zero insertion, pad (x0, x1, y0, y1; negative crops), convolve
  every channel with the 2-D filter f, and downsample by `down` (scipy.signal.upfirdn per axis)."""
  b, h, w, c = x.shape
  if up > 1:
    x = x.reshape(b, h, 1, w, 1, c)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0)))
    x = x.reshape(b, h * up, w * up, c)
  px0, px1, py0, py1 = padding
  x = jax.lax.pad(x, jnp.zeros((), x.dtype),
                  ((0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)))
  # A true convolution: correlate with the flipped filter, one group per channel.
  kernel = jnp.asarray(np.ascontiguousarray(f[::-1, ::-1]), x.dtype)
  kernel = jnp.tile(kernel[:, :, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(x, kernel, (down, down), 'VALID', feature_group_count=c,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def upsample2d(x: jax.Array, f: np.ndarray, up: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, up H, up W, C]: zero insertion and the filter times up^2 (keeps the mean)."""
  fw = f.shape[0]
  p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
  return upfirdn2d(x, f * up * up, up=up, padding=(p0, p1, p0, p1))


def downsample2d(x: jax.Array, f: np.ndarray, down: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, H / down, W / down, C]: filter then keep every `down`-th pixel."""
  fw = f.shape[0]
  p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
  return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def _conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding='SAME') -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class EqualDense(nn.Module):
  """y = act((x W) lr_mul / sqrt(fan_in) + b lr_mul) with W ~ N(0, 1) / lr_mul (ProGAN sec. 4.1)."""
  features: int
  lr_mul: float = 1.0
  bias_init: float | Sequence[float] = 0.0  # a scalar, or one value per output feature
  use_bias: bool = True
  activation: str = 'linear'  # linear | lrelu
  weight_init: float = 1.0  # std of the stored weights before / lr_mul (0: StyleGAN3's input affine)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    weight = self.param('kernel', lambda k, s: jax.random.normal(k, s) * self.weight_init / self.lr_mul,
                        (fan_in, self.features))
    y = x @ (weight * (self.lr_mul / np.sqrt(fan_in)))
    if self.use_bias:
      bias_init = np.broadcast_to(np.asarray(self.bias_init, np.float32), (self.features,))
      bias = self.param('bias', lambda k, s: jnp.asarray(bias_init / self.lr_mul), (self.features,))
      y = y + bias * self.lr_mul
    return lrelu(y) if self.activation == 'lrelu' else y


class EqualConv(nn.Module):
  """A k x k convolution with the equalised learning rate, optionally downsampling by 2 with the FIR
  filter first (StyleGAN2's discriminator: blur, then a stride-2 convolution)."""
  features: int
  kernel_size: int = 3
  down: bool = False
  use_bias: bool = True
  activation: str = 'linear'
  gain: float = 1.0  # output scale (sqrt(0.5) in the residual blocks)
  taps: Sequence[float] = (1, 3, 3, 1)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    weight = self.param('kernel', nn.initializers.normal(1.0), (k, k, cin, self.features))
    weight = weight / np.sqrt(cin * k * k)
    if self.down:
      f = setup_filter(self.taps)
      if k == 1:
        y = _conv(downsample2d(x, f), weight)
      else:
        # Pad by the conv's k // 2 plus what the filter needs, then a valid stride-2 convolution.
        fw, pad = f.shape[0], k // 2
        p0, p1 = pad + (fw - 2 + 1) // 2, pad + (fw - 2) // 2
        y = _conv(upfirdn2d(x, f, padding=(p0, p1, p0, p1)), weight, stride=2, padding='VALID')
    else:
      y = _conv(x, weight)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    y = lrelu(y) if self.activation == 'lrelu' else y
    return y * self.gain


def modulated_conv(x: jax.Array, weight: jax.Array, styles: jax.Array, demodulate: bool = True,
                   eps: float = 1e-8, padding='SAME') -> jax.Array:
  """StyleGAN2 eqs. 1 and 3: x [B, H, W, I], weight [k, k, I, O], styles s [B, I] ->
  conv(x, w''_b) for w'_b = s_b w and w''_b = w'_b / sqrt(sum over (k, k, I) of w'_b^2 + eps).
  `padding` is lax's (StyleGAN3 pads by k - 1 on each side: the full convolution)."""
  y = _conv(x * styles[:, None, None, :].astype(x.dtype), weight, padding=padding)
  if demodulate:
    # sum_{k,i} (s_i w_kio)^2 = sum_i s_i^2 sum_k w_kio^2
    w2 = jnp.sum(jnp.square(weight), axis=(0, 1))  # [I, O]
    d = jax.lax.rsqrt(jnp.square(styles) @ w2 + eps)  # [B, O]
    y = y * d[:, None, None, :]
  return y


class FourierFeatures(nn.Module):
  """StyleGAN3's synthesis input (Karras et al. 2021, arXiv:2106.12423, sec. 3.1 and appendix F):
  `channels` sinusoids sin(2 pi (f_c . x + phi_c)) sampled on a `size` x `size` grid at
  `sampling_rate` samples per unit (the image spans one unit), frequencies drawn once in the disc
  of radius `bandwidth` and phases in [-1/2, 1/2) (fixed, in the 'stats' collection), then mixed by
  a learned C x C matrix. An affine map of w gives a rotation (r_c, r_s), normalised, and a
  translation (t_x, t_y) (initialised to the identity: weights 0, bias (1, 0, 0, 0)); `transform`
  ([3, 3] or [B, 3, 3], the inverse of the wanted image transform, identity by default) is applied
  after them. Amplitudes fade to 0 between `bandwidth` and sampling_rate / 2 so a rotated or scaled
  input stays below Nyquist."""
  channels: int
  size: int
  sampling_rate: float
  bandwidth: float

  @nn.compact
  def __call__(self, w: jax.Array, transform: jax.Array | None = None) -> jax.Array:
    c, b = self.channels, w.shape[0]

    def init_freqs():
      f = jax.random.normal(self.make_rng('params'), (c, 2))
      r = jnp.sqrt(jnp.sum(jnp.square(f), axis=1, keepdims=True))
      return f / (r * jnp.exp(jnp.square(r)) ** 0.25) * self.bandwidth

    freqs = self.variable('stats', 'freqs', init_freqs).value
    phases = self.variable('stats', 'phases',
                           lambda: jax.random.uniform(self.make_rng('params'), (c,)) - 0.5).value
    weight = self.param('kernel', nn.initializers.normal(1.0), (c, c))
    t = EqualDense(4, weight_init=0.0, bias_init=(1.0, 0.0, 0.0, 0.0), name='affine')(w)
    t = t / jnp.sqrt(jnp.sum(jnp.square(t[:, :2]), axis=1, keepdims=True))
    zeros, ones = jnp.zeros((b,)), jnp.ones((b,))
    rotate = jnp.stack([jnp.stack([t[:, 0], -t[:, 1], zeros], -1),
                        jnp.stack([t[:, 1], t[:, 0], zeros], -1),
                        jnp.stack([zeros, zeros, ones], -1)], axis=1)
    translate = jnp.stack([jnp.stack([ones, zeros, -t[:, 2]], -1),
                           jnp.stack([zeros, ones, -t[:, 3]], -1),
                           jnp.stack([zeros, zeros, ones], -1)], axis=1)
    user = jnp.eye(3) if transform is None else transform
    m = rotate @ translate @ jnp.broadcast_to(user, (b, 3, 3))
    phases = phases + jnp.einsum('cd,bd->bc', freqs, m[:, :2, 2])
    freqs = jnp.einsum('cd,bde->bce', freqs, m[:, :2, :2])  # [B, C, 2]
    amplitudes = jnp.clip(1 - (jnp.sqrt(jnp.sum(jnp.square(freqs), -1)) - self.bandwidth)
                          / (self.sampling_rate / 2 - self.bandwidth), 0, 1)
    # Pixel centres, as torch's affine_grid(align_corners=False) scaled by size / (2 rate).
    grid = (np.arange(self.size) + 0.5 - self.size / 2) / self.sampling_rate
    x = (grid[None, None, :, None] * freqs[:, None, None, :, 0]
         + grid[None, :, None, None] * freqs[:, None, None, :, 1] + phases[:, None, None, :])
    x = jnp.sin(2 * np.pi * x) * amplitudes[:, None, None, :]
    return x @ (weight / np.sqrt(c))
