"""The multi-layer perceptron (Rumelhart, Hinton, Williams 1986, "Learning representations by
back-propagating errors"): flattened input, ReLU hidden layers, a linear classifier on top.

ReLU (Nair & Hinton 2010) replaces the paper's logistic units, as in every modern use.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers import zoo


class MLP(nn.Module):
  hidden_features: Sequence[int] = (256,)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or normalisation: the same function in training and evaluation.
    x = x.reshape(x.shape[0], -1)
    for features in self.hidden_features:
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(self.num_classes)(x)


# 64*256 + 256 + 256*10 + 10: the count follows from the layer sizes.
zoo.register('digits_mlp', lambda: MLP(hidden_features=(256,), num_classes=10),
             inputs=zoo.image_input(8, 8, 1), apply_kwargs={'train': False},
             paper='Learning representations by back-propagating errors (Rumelhart et al. 1986)',
             reference_params=64 * 256 + 256 + 256 * 10 + 10, reference_source='closed form')
