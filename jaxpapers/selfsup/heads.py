"""The MLP heads the self-supervised papers put on an encoder: projectors and predictors.

Every paper of this family uses the same shape of head, Linear -> BN -> ReLU repeated, then a last
Linear (optionally followed by BN): SimCLR's projection g (section 2.1, two layers; its released
code has BN in the hidden layer), MoCo v1's plain linear fc (`hidden=()`), BYOL's projector and
predictor (section 3.3: Linear 4096 -> BN -> ReLU -> Linear 256), SimSiam's projector (three
layers, BN on every layer including the output) and bottleneck predictor (section 4.1), SwAV's
2-layer projector and Barlow Twins' 3-layer projector (8192 wide, section 2). Each paper's file
says which widths it uses; the presets of `experiments/configs/selfsup.py` shrink them.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers.nn.batch_norm import BatchNorm


class MLPHead(nn.Module):
  """`hidden` widths of Linear -> BN -> ReLU, then Linear(`features`) (-> BN when `output_norm`)."""
  hidden: Sequence[int]
  features: int
  output_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, width in enumerate(self.hidden):
      # No bias before BN: BN's own shift replaces it.
      x = nn.Dense(width, use_bias=False, name=f'dense_{i}')(x)
      x = nn.relu(BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                            name=f'bn_{i}')(x))
    x = nn.Dense(self.features, use_bias=not self.output_norm, name='out')(x)
    if self.output_norm:
      x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                    name='out_bn')(x)
    return x
