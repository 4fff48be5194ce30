"""Transposed ("fractionally-strided") convolution computed as stride-1 convolutions of its phases.

`flax.linen.ConvTranspose` (and `lax.conv_transpose`) compute a transposed convolution as a
convolution of the input dilated by the stride (`lhs_dilation`). The result is right, but on XLA:CPU
the kernel gradient of such a convolution takes a slow path: 4.9 s for one DCGAN layer (batch 64,
8x8x256 -> 16x16x128, kernel 4, stride 2) against 0.1 s for its forward pass (2-core machine,
jaxlib 0.12.0.1), which made a 32x32 DCGAN round 40x slower than PyTorch's. The dilated input is
also mostly zeros: with stride s, s^2 - 1 of every s^2 products are with a zero.

The same maths without dilation (the sub-pixel view of Shi et al. 2016, arXiv:1609.05158): output
position o = s m + r (phase r = 0..s-1 per spatial axis) only meets the kernel taps j = c_r + s t
with c_r = (p_lo - r) mod s, and then reads input m + t + d_r with d_r = (r + c_r - p_lo) / s, so

    y[s m + r] = sum_t K[c_r + s t] x[m + d_r + t],

a stride-1 correlation of the input (shifted by d_r) with the sub-kernel K[c_r::s]. `conv_transpose`
computes one such convolution per phase (s^2 of them in 2-D), interleaves their outputs and crops
to the dilated form's length. Only stride-1 convolutions and reshapes remain, so their gradients are
stride-1 convolutions too, and no product with an inserted zero is computed. The results equal
`flax.linen.ConvTranspose`'s (`transpose_kernel=False`, explicit padding) to float rounding, for any
stride, kernel size and padding (`tests/nn/test_conv_transpose.py`), and `ConvTranspose` here has
the same parameters (names, shapes, initialisers), so checkpoints and converted weights carry over.

The input gradient of a strided convolution is such a transposed convolution, and autodiff writes
it in the dilated form too. XLA:CPU's oneDNN path leaves dilated convolutions to XLA's own kernel,
so `strided_conv` (and the `StridedConv` module, a drop-in for `flax.linen.Conv`) computes it by
phases: a DCGAN round under oneDNN 1.05x faster (WORKSPACE.md, issue 16).
"""

from __future__ import annotations

import functools
import itertools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: Sequence[tuple[int, int]]) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, 1, padding, lhs_dilation=strides)`, NHWC / HWIO, by phases.

  x: [B, *spatial, C_in]; kernel: [*window, C_in, C_out]; strides and padding (low, high) per
  spatial axis, as the padding of the dilated input.
  """
  spatial = x.shape[1:-1]
  window = kernel.shape[:-2]
  lengths = [(n - 1) * s + 1 + lo + hi - k + 1
             for n, s, (lo, hi), k in zip(spatial, strides, padding, window)]
  if min(lengths) < 1:
    raise ValueError(f'transposed convolution of {spatial} with window {window}, strides '
                     f'{strides} and padding {padding} has no output')
  per_phase = [-(-length // s) for length, s in zip(lengths, strides)]  # outputs per phase
  phases = []
  for phase in itertools.product(*(range(s) for s in strides)):
    taps, pads = [], []
    for axis, r in enumerate(phase):
      s, (lo, _), n, m = strides[axis], padding[axis], spatial[axis], per_phase[axis]
      first = (lo - r) % s
      offset = (r + first - lo) // s  # d_r
      count = len(range(first, window[axis], s))  # taps of this phase on this axis
      taps.append(slice(first, None, s))
      # Input rows offset .. offset + m + count - 2 feed the m outputs; pad or crop to exactly those.
      pads.append((-offset, m + count - 1 + offset - n))
    sub_kernel = kernel[tuple(taps)]
    if 0 in sub_kernel.shape[:-2]:  # a phase no tap reaches (window smaller than the stride)
      phases.append(jnp.zeros((x.shape[0], *per_phase, kernel.shape[-1]), x.dtype))
      continue
    # Negative pads crop the input; the others are the convolution's own padding, which copies
    # nothing (a padded copy of the input per phase made a DCGAN round 1.15x slower).
    cropped = x[(slice(None), *(slice(max(-lo, 0), n + min(hi, 0))
                                for (lo, hi), n in zip(pads, spatial)))]
    phases.append(_conv(cropped, sub_kernel, (1,) * len(strides),
                        [(max(lo, 0), max(hi, 0)) for lo, hi in pads]))
  # [s_1 * ... * s_k, B, m_1, ..., m_k, C] -> interleave: output s m + r of each axis.
  y = jnp.stack(phases).reshape(*strides, x.shape[0], *per_phase, kernel.shape[-1])
  k = len(strides)
  order = [k] + [axis for i in range(k) for axis in (k + 1 + i, i)] + [2 * k + 1]
  y = y.transpose(order).reshape(x.shape[0], *(m * s for m, s in zip(per_phase, strides)),
                                 kernel.shape[-1])
  return y[(slice(None), *(slice(0, length) for length in lengths))]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                 padding: tuple[tuple[int, int], ...]) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding)`, NHWC / HWIO, whose input gradient is
  computed by `conv_transpose`'s phases.

  The input gradient of a strided convolution is a transposed convolution of the output gradient.
  Autodiff writes it in the dilated form, which XLA:CPU's oneDNN path does not take (it runs in
  XLA's own kernel); by phases it is stride-1 convolutions that oneDNN does. The kernel gradient
  and the forward pass are lax's.
  """
  return _conv(x, kernel, strides, padding)


def _conv(x, kernel, strides, padding):  # channels last: N...C inputs, ...IO kernels
  return lax.conv_general_dilated(
      x, kernel, strides, padding,
      dimension_numbers=lax.conv_dimension_numbers(x.shape, kernel.shape, _specs(x.ndim)))


def _strided_conv_forward(x, kernel, strides, padding):
  return _conv(x, kernel, strides, padding), (x, kernel)


def _strided_conv_backward(strides, padding, residuals, dy):
  x, kernel = residuals
  window = kernel.shape[:-2]
  # The padding of lax's own input gradient (the dilated output gradient's), per spatial axis.
  gradient_padding = []
  for n, m, k, s, (lo, _) in zip(x.shape[1:-1], dy.shape[1:-1], window, strides, padding):
    before = k - 1 - lo
    gradient_padding.append((before, n + k - 1 - ((m - 1) * s + 1) - before))
  flipped = jnp.swapaxes(kernel[(slice(None, None, -1),) * len(window)], -2, -1)
  dx = conv_transpose(dy, flipped, strides, gradient_padding)
  _, kernel_vjp = jax.vjp(lambda kernel: _conv(x, kernel, strides, padding), kernel)
  return dx, kernel_vjp(dy)[0]


strided_conv.defvjp(_strided_conv_forward, _strided_conv_backward)


def _specs(ndim: int) -> tuple[str, str, str]:
  spatial = 'DHW'[3 - (ndim - 2):]
  return f'N{spatial}C', f'{spatial}IO', f'N{spatial}C'


class ConvTranspose(nn.Module):
  """A drop-in for `flax.linen.ConvTranspose` with explicit padding, computed by `conv_transpose`.

  Same parameters ('kernel' [*kernel_size, C_in, features], 'bias') and outputs as flax's module
  with `transpose_kernel=False`; `padding` pads the stride-dilated input, as flax's does.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  padding: Sequence[tuple[int, int]] = ()
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = len(self.kernel_size)
    strides = tuple(self.strides or (1,) * k)
    padding = tuple(self.padding or ((0, 0),) * k)
    return _with_parameters(self, x, lambda x, kernel: conv_transpose(x, kernel, strides, padding))


class StridedConv(nn.Module):
  """A drop-in for `flax.linen.Conv` with explicit padding, computed by `strided_conv`: the same
  parameters ('kernel' [*kernel_size, C_in, features], 'bias') and outputs."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: Sequence[tuple[int, int]]
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    strides, padding = tuple(self.strides), tuple(tuple(p) for p in self.padding)
    return _with_parameters(self, x, lambda x, kernel: strided_conv(x, kernel, strides, padding))


def _with_parameters(module: nn.Module, x: jax.Array,
                     convolve: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """`convolve(x, kernel)` plus the bias, with flax's convolution parameters: 'kernel'
  [*kernel_size, C_in, features] and 'bias' [features], float32, cast to the input's dtype."""
  kernel = module.param('kernel', module.kernel_init,
                        (*module.kernel_size, x.shape[-1], module.features), jnp.float32)
  y = convolve(x, kernel.astype(x.dtype))
  if module.use_bias:
    y = y + module.param('bias', module.bias_init, (module.features,), jnp.float32).astype(x.dtype)
  return y
