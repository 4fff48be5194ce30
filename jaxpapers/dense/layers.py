"""Upsampling pieces the segmenters share: exact 2x transposed convolutions, bilinear kernels,
resizing with PyTorch's `align_corners=False` geometry, max pooling that keeps its indices."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.nn.conv_transpose import ConvTranspose


def transposed_padding(kernel: int, factor: int) -> tuple[int, int]:
  """Padding of the dilated input that makes a transposed convolution exactly `factor` x larger.

  torch's ConvTranspose2d(kernel, stride=factor, padding=p, output_padding=op) gives
  (n - 1) f - 2p + k + op = f n when op = f + 2p - k; the dilated form pads (k - 1 - p, k - 1 - p +
  op). p is the smallest that makes op >= 0.
  """
  p = max(0, -(-(kernel - factor) // 2))
  op = factor + 2 * p - kernel
  return (kernel - 1 - p, kernel - 1 - p + op)


def bilinear_kernel(kernel: int, channels_in: int, channels_out: int) -> np.ndarray:
  """The bilinear-interpolation filter of FCN's upsampling layers (sec. 3.3), one per channel
  (diagonal in the channel dimensions): HWIO [k, k, c_in, c_out]."""
  factor = (kernel + 1) // 2
  centre = factor - 1 if kernel % 2 == 1 else factor - 0.5
  og = np.arange(kernel)
  filt = 1 - np.abs(og - centre) / factor
  weights = np.zeros((kernel, kernel, channels_in, channels_out), np.float32)
  for c in range(min(channels_in, channels_out)):
    weights[:, :, c, c] = filt[:, None] * filt[None, :]
  return weights


def bilinear_init(key, shape, dtype=jnp.float32):
  del key
  return jnp.asarray(bilinear_kernel(shape[0], shape[2], shape[3]), dtype)


_LECUN = nn.initializers.lecun_normal()


def upsample(features: int, kernel: int, factor: int, name: str, use_bias: bool = True,
             kernel_init=_LECUN) -> ConvTranspose:
  """A transposed convolution that multiplies the spatial size by exactly `factor`."""
  pad = transposed_padding(kernel, factor)
  return ConvTranspose(features, (kernel, kernel), strides=(factor, factor), padding=(pad, pad),
                       use_bias=use_bias, kernel_init=kernel_init, name=name)


def resize(x: jax.Array, height: int, width: int, method: str = 'bilinear') -> jax.Array:
  """NHWC resize; bilinear is torch's `F.interpolate(..., align_corners=False)` (half-pixel
  centres, no antialiasing)."""
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), method, antialias=False)


def max_pool_with_indices(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """2x2 stride-2 max pooling and, per output, which of the 4 window positions held the max."""
  n, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f'pooling with indices needs even sizes, got {h}x{w}')
  windows = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(
      n, h // 2, w // 2, c, 4)
  return windows.max(-1), jnp.argmax(windows, -1)


def max_unpool(x: jax.Array, indices: jax.Array) -> jax.Array:
  """SegNet's upsampling: each value goes back to the position its max came from, zeros elsewhere."""
  n, h, w, c = x.shape
  spread = jax.nn.one_hot(indices, 4, dtype=x.dtype) * x[..., None]
  return spread.reshape(n, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * h, 2 * w, c)
