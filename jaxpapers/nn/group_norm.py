"""Group normalization, channels last: "Group Normalization" (Wu & He, 2018, arXiv:1803.08494).

Section 3.1: each example's channels are split into G groups, every value is normalised by the
mean and standard deviation (epsilon added to the variance) of its group over all positions, then
scaled and shifted per channel (gamma, beta).

The maths and the parameters are `flax.linen.GroupNorm`'s: the variance as E[x^2] - E[x]^2
(floored at 0), epsilon inside the square root, and `scale` and `bias` of one value per channel,
initialised to 1 and 0. Converted weights and checkpoints therefore carry over. The order of the
work differs:
- first, per example and channel, the sums of x and x^2 over all positions, a reduction that keeps
  the contiguous channel axis;
- then the sums within each group, over a few numbers per example;
- the normalisation is one multiply-add per value, with factors per example and channel.
flax instead reduces a [..., groups, channels per group] view over positions and channels together,
which XLA:CPU reads with strides. This form made DDPM sampling with the digits U-Net 1.12x faster on
the 2-core CPU (WORKSPACE.md, issue 16). The sums are exact up to float32 rounding order, so the
outputs equal flax's to rounding (`tests/nn/test_group_norm.py`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class GroupNorm(nn.Module):
  """x [batch, *positions, channels] -> the same shape, normalised within `num_groups` groups."""
  num_groups: int = 32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    if channels % self.num_groups:
      raise ValueError(f'{channels} channels do not split into {self.num_groups} groups')
    scale = self.param('scale', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    per_group = channels // self.num_groups
    positions = tuple(range(1, x.ndim - 1))
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))

    def group_mean(values):  # [batch, channels] sums over positions -> [batch, groups] means
      sums = jnp.sum(values, axis=positions)
      return sums.reshape(x.shape[0], self.num_groups, per_group).sum(-1) / (
          per_group * (x.size // (x.shape[0] * channels)))

    mean = group_mean(x32)
    variance = jnp.maximum(group_mean(x32 * x32) - mean * mean, 0.0)
    inverse = jnp.repeat(jax.lax.rsqrt(variance + self.epsilon), per_group, axis=1) * scale
    shift = bias - jnp.repeat(mean, per_group, axis=1) * inverse
    broadcast = (x.shape[0],) + (1,) * len(positions) + (channels,)
    return x * inverse.reshape(broadcast) + shift.reshape(broadcast)
