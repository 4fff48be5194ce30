"""Pieces the convnet zoo shares: batch normalisation, He initialisation, torch-geometry pooling.

* Batch Normalization (Ioffe & Szegedy 2015, arXiv:1502.03167), Algorithms 1 and 2: `batch_norm`
  is `jaxpapers.nn.batch_norm.BatchNorm` (flax's variables and statistics, fewer passes over the
  activations), normalising with the mini-batch mean and variance when training and with running
  averages in evaluation, with torchvision's constants: momentum 0.1 in torch's
  convention (the running average keeps 0.9 of its old value, flax's `momentum=0.9`) and eps 1e-5
  (the Inception family uses 1e-3). Under `jax.jit` with the batch sharded over a mesh the
  statistics are those of the global batch: XLA inserts the cross-device reduction.
  Departure: flax updates the running variance with the biased batch variance; torch (and
  Algorithm 2, which uses m/(m-1) Var) use the unbiased one. Only training-time updates of the
  running variance differ (by a factor m/(m-1) on the new term); evaluation with given statistics is
  identical.
* Delving Deep into Rectifiers (He et al. 2015, arXiv:1502.01852), sec. 2.2: `he_normal` draws
  N(0, 2/n), untruncated, with n = k*k*c_out (`fan_out`, eq. 14, the backward-propagation case and
  torchvision's `kaiming_normal_(mode='fan_out')`) or n = k*k*c_in (`fan_in`, eq. 10). For a grouped
  convolution n = k*k*c_out in both conventions, as in torch.
* Pooling with PyTorch's (and Caffe's) geometry: explicit symmetric padding, `ceil_mode` and
  adaptive average pooling, so that feature-map sizes, and converted torchvision weights, line up.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.nn.batch_norm import BatchNorm


def he_normal(mode: str = 'fan_out') -> nn.initializers.Initializer:
  return nn.initializers.variance_scaling(2.0, mode, 'normal')


# torch.nn.Linear's default weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for heads that the
# reference implementations leave at torch's default.
torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def batch_norm(train: bool, name: str, epsilon: float = 1e-5) -> BatchNorm:
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, name=name)


def symmetric_padding(padding: int | Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
  """torch's `padding=p` or `padding=(ph, pw)` as flax's per-side padding."""
  ph, pw = (padding, padding) if isinstance(padding, int) else padding
  return ((ph, ph), (pw, pw))


class ConvBN(nn.Module):
  """Convolution without bias, batch norm, ReLU: the unit of GoogLeNet (torchvision's
  BasicConv2d, eps 1e-3) and of Inception-v4 / Inception-ResNet-v2 (timm's ConvNormAct)."""
  features: int
  kernel_size: int | Sequence[int]
  strides: int = 1
  padding: int | Sequence[int] = 0
  epsilon: float = 1e-3
  kernel_init: nn.initializers.Initializer = he_normal()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k = self.kernel_size
    x = nn.Conv(self.features, (k, k) if isinstance(k, int) else tuple(k), strides=self.strides,
                padding=symmetric_padding(self.padding), use_bias=False,
                kernel_init=self.kernel_init, name='conv')(x)
    return nn.relu(batch_norm(train, 'bn', self.epsilon)(x))


def pool(x: jax.Array, kind: str, window: int, stride: int, padding: int = 0,
         ceil_mode: bool = False) -> jax.Array:
  """Max or average pooling of NHWC `x` with torch's output-size rule.

  `ceil_mode` rounds the number of windows up (torch's `ceil_mode=True`, Caffe's only mode) as
  long as the last window starts inside the input or its left padding. Average pooling divides by
  the number of input elements in each window, padding excluded (torch's
  `count_include_pad=False`, Caffe's rule for windows that run past the input).
  """
  pads = []
  for size in x.shape[1:3]:
    span = size + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
      out -= 1
    extra = max(0, (out - 1) * stride + window - size - 2 * padding)
    pads.append((padding, padding + extra))
  if kind == 'max':
    if window == stride and not any(lo or hi for lo, hi in pads):
      return _tiled_max_pool(x, window)
    return nn.max_pool(x, (window, window), (stride, stride), pads)
  if kind == 'avg':
    return nn.avg_pool(x, (window, window), (stride, stride), pads, count_include_pad=False)
  raise ValueError(f'pool kind must be "max" or "avg", got {kind!r}')


def _tiled_max_pool(x: jax.Array, window: int) -> jax.Array:
  # Non-overlapping windows as a reshape and a max: the same values as `nn.max_pool`, and a gradient
  # of element-wise compares where XLA:CPU's reduce-window and its select-and-scatter gradient took
  # 4.5x longer (2x2 pool of [64, 8, 8, 32] after ReLU, forward and backward: 1.12 against 0.25 ms).
  # Where a window holds tied maxima the gradient is shared among them instead of going to the
  # first; after a ReLU those ties are zeros whose ReLU gradient is zero anyway.
  b, h, w, c = x.shape
  rows, cols = h // window, w // window
  x = x[:, :rows * window, :cols * window]  # the floor rule drops the remainder, as max_pool does
  return x.reshape(b, rows, window, cols, window, c).max(axis=(2, 4))


def _adaptive_weights(size_in: int, size_out: int) -> np.ndarray:
  # Output i averages input rows floor(i*in/out) .. ceil((i+1)*in/out) - 1, as torch does.
  weights = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
    weights[i, start:end] = 1.0 / (end - start)
  return weights


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
  """torch's `adaptive_avg_pool2d` on NHWC `x` (windows may overlap, or repeat when upsampling)."""
  if x.shape[1:3] == tuple(output_size):
    return x
  rows = _adaptive_weights(x.shape[1], output_size[0])
  cols = _adaptive_weights(x.shape[2], output_size[1])
  return jnp.einsum('ih,jw,bhwc->bijc', rows, cols, x, precision=jax.lax.Precision.HIGHEST)
