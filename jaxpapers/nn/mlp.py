"""The multi-layer perceptron (Rumelhart, Hinton, Williams 1986, "Learning representations by
back-propagating errors"): flattened input, ReLU hidden layers, a linear classifier on top.

ReLU (Nair & Hinton 2010) replaces the paper's logistic units, as in every modern use. Optional
dropout (Srivastava et al. 2014) on the input and after each hidden layer, in training only (as the
teacher of Hinton et al.'s distillation experiment, `jaxpapers/distill/hinton.py`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxpapers import zoo


class MLP(nn.Module):
  hidden_features: Sequence[int] = (256,)
  num_classes: int = 10
  dropout: float = 0.0  # after each hidden layer
  input_dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    for features in self.hidden_features:
      x = nn.relu(nn.Dense(features)(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


# 64*256 + 256 + 256*10 + 10: the count follows from the layer sizes.
zoo.register('digits_mlp', lambda: MLP(hidden_features=(256,), num_classes=10),
             inputs=zoo.image_input(8, 8, 1), apply_kwargs={'train': False},
             paper='Learning representations by back-propagating errors (Rumelhart et al. 1986)',
             reference_params=64 * 256 + 256 + 256 * 10 + 10, reference_source='closed form')
