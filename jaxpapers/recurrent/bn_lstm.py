"""BN-LSTM: an LSTM with batch normalisation of its input, recurrent and cell terms.

"Recurrent Batch Normalization", Cooijmans, Ballas, Laurent, Gulcehre, Courville, 2016,
arXiv:1603.09025, section 3, Eqs. (6)-(8):

    (f, i, o, g) = BN(W_h h(t-1); gamma_h, beta_h) + BN(W_x x(t); gamma_x, beta_x) + b
    c(t) = sigmoid(f) * c(t-1) + sigmoid(i) * tanh(g)
    h(t) = sigmoid(o) * tanh(BN(c(t); gamma_c, beta_c))

The input and recurrent terms are normalised separately, so that their relative contribution is
set by gamma_x and gamma_h; beta_h and beta_x are dropped (the paper sets them to zero: they are
redundant with b). Statistics are kept *per time step* (section 3): in training each step t is
normalised by the mean and variance of its own mini-batch of pre-activations; a running average
of those statistics is kept separately for every t < `max_steps` and used at test time
("population statistics"); steps beyond `max_steps` use the last step's statistics, as the paper
does for T > T_max. Section 4 (and 5.1) initialise every gamma to 0.1: with gamma = 1 the
normalised pre-activations saturate tanh and the gradients vanish (their Figure 1).

The cell follows the `jaxpapers.recurrent` interface, `cell(carry, x) -> (carry, h)`. Its carry is
(c, h, t), where t, an int32 scalar, picks the statistics row. The statistics live in the
`batch_stats` collection, one [max_steps, features] table per normalisation, so the scan must
carry that collection: `BNLSTM(cell)` (`scan_bn_lstm`) is `nn.scan` with `variable_carry=
'batch_stats'` (plain `nn.RNN(cell, variable_carry='batch_stats')` fails at init; see `BNLSTM`).
`use_running_average` is a field, as in `nn.BatchNorm`: build the cell with it set for
evaluation. Under data-parallel jit the means are over the global batch (XLA inserts the
reduction), the paper's setting.

`PixelClassifier` is the paper's sequential MNIST model (section 5.1: a single recurrent layer
reading one pixel per step, its last hidden state into a softmax) on any image batch, with an
optional fixed pixel permutation (the "permuted" task). Departures: the project's offline data is
scikit-learn's 8x8 digits (64 steps, not MNIST's 784); the permutation is drawn from NumPy with
`permutation_seed` (a constant of the model, like the paper's one fixed permutation); the paper's
hidden size is 100, the default here; the forget-gate bias starts at 1 (the paper does not say).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.recurrent.lstm import LSTMCell

PAPER = ('Recurrent Batch Normalization (Cooijmans, Ballas, Laurent, Gulcehre, Courville 2016, '
         'arXiv:1603.09025)')


class StepBatchNorm(nn.Module):
  """Batch normalisation with one set of statistics per time step t (a [max_steps, F] table).

  `__call__(x, t)`: x [..., F], t an int32 scalar. Training normalises by the batch statistics of
  x and moves row min(t, max_steps - 1) of the running averages toward them; evaluation
  (`use_running_average`) normalises by that row.
  """
  max_steps: int
  use_running_average: bool = False
  use_bias: bool = True
  momentum: float = 0.99
  epsilon: float = 1e-5
  scale_init: float = 0.1

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
    features = x.shape[-1]
    mean_table = self.variable('batch_stats', 'mean', jnp.zeros, (self.max_steps, features))
    var_table = self.variable('batch_stats', 'var', jnp.ones, (self.max_steps, features))
    row = jnp.minimum(t, self.max_steps - 1)
    if self.use_running_average:
      mean, var = mean_table.value[row], var_table.value[row]
    else:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axis=axes)
      var = jnp.mean(jnp.square(x - mean), axis=axes)
      if not self.is_initializing():
        m = self.momentum
        mean_table.value = mean_table.value.at[row].set(m * mean_table.value[row] + (1 - m) * mean)
        var_table.value = var_table.value.at[row].set(m * var_table.value[row] + (1 - m) * var)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * self.param('scale', nn.initializers.constant(self.scale_init), (features,))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(), (features,))
    return y


class BNLSTMCell(nn.RNNCellBase):
  """Eqs. (6)-(8). Carry: (c [..., R], h [..., R], t int32 []). Scan with variable_carry='batch_stats'."""
  hidden_size: int
  max_steps: int
  use_running_average: bool = False
  forget_bias: float = 1.0
  gamma_init: float = 0.1
  momentum: float = 0.99
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array, jax.Array],
               x: jax.Array) -> tuple[tuple[jax.Array, jax.Array, jax.Array], jax.Array]:
    c, h, t = carry
    size = self.hidden_size
    norm = functools.partial(StepBatchNorm, self.max_steps, self.use_running_average,
                             momentum=self.momentum, epsilon=self.epsilon,
                             scale_init=self.gamma_init)

    def bias_init(key, shape, dtype=jnp.float32):
      del key
      return jnp.zeros(shape, dtype).at[size:2 * size].set(self.forget_bias)

    wx = nn.Dense(4 * size, use_bias=False, name='input')(x)
    wh = nn.Dense(4 * size, use_bias=False, kernel_init=nn.initializers.orthogonal(),
                  name='recurrent')(h)
    b = self.param('bias', bias_init, (4 * size,))
    gates = (norm(use_bias=False, name='recurrent_bn')(wh, t)
             + norm(use_bias=False, name='input_bn')(wx, t) + b)
    i, f, g, o = jnp.split(gates, 4, axis=-1)  # The order of `LSTMCell`.
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(norm(name='cell_bn')(c, t))
    return (c, h, t + 1), h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    del rng  # The carry starts at zero, at step 0.
    zeros = jnp.zeros(input_shape[:-1] + (self.hidden_size,), jnp.float32)
    return zeros, zeros, jnp.zeros((), jnp.int32)

  @property
  def num_feature_axes(self) -> int:
    return 1


class BNLSTM(nn.Module):
  """A BN-LSTM layer over batch-first sequences [B, T, F] -> hidden states [B, T, R].

  `nn.scan` over the cell with the parameters broadcast and `batch_stats` carried from step to
  step in training (read-only, broadcast, in evaluation). A carried collection must exist before
  the scan starts (its structure is the scan's carry), so at initialisation the cell is called
  once on the first step, outside the scan, to create the statistics tables.
  """
  cell: BNLSTMCell

  @nn.compact
  def __call__(self, xs: jax.Array) -> jax.Array:
    carry = self.cell.initialize_carry(jax.random.key(0), xs[:, 0].shape)
    if self.is_initializing():
      self.cell(carry, xs[:, 0])
    # Evaluation only reads the statistics: they are broadcast like the parameters.
    evaluating = self.cell.use_running_average
    scan = nn.scan(lambda cell, carry, x: cell(carry, x),
                   variable_broadcast=['params', 'batch_stats'] if evaluating else 'params',
                   variable_carry=False if evaluating else 'batch_stats',
                   split_rngs={'params': False},
                   in_axes=1, out_axes=1)
    return scan(self.cell, carry, xs)[1]


def scan_bn_lstm(cell: BNLSTMCell, **kwargs) -> BNLSTM:
  """The BN-LSTM layer over `cell` (the counterpart of `nn.RNN(cell)` for the other cells)."""
  return BNLSTM(cell, **kwargs)


def pixel_permutation(num_pixels: int, seed: int) -> np.ndarray:
  """The fixed permutation of the permuted task (NumPy, so nothing runs on a JAX backend)."""
  return np.random.default_rng(seed).permutation(num_pixels)


class PixelClassifier(nn.Module):
  """Images [B, H, W, C] read one pixel (C values) per step, last state -> logits (section 5.1)."""
  cell: str = 'bn_lstm'  # 'bn_lstm' or 'lstm'
  hidden_size: int = 100
  num_classes: int = 10
  permute: bool = False
  permutation_seed: int = 0
  bn_momentum: float = 0.99  # Of the population statistics' running averages.
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    b, height, width, channels = images.shape
    x = images.reshape(b, height * width, channels)
    if self.permute:
      x = x[:, pixel_permutation(height * width, self.permutation_seed)]
    if self.cell == 'bn_lstm':
      rnn = scan_bn_lstm(BNLSTMCell(self.hidden_size, max_steps=height * width,
                                    use_running_average=not train, momentum=self.bn_momentum,
                                    epsilon=self.bn_epsilon, name='cell'), name='rnn')
    elif self.cell == 'lstm':
      rnn = nn.RNN(LSTMCell(self.hidden_size, name='cell'), name='rnn')
    else:
      raise ValueError(f'unknown cell {self.cell!r}; choose bn_lstm or lstm')
    return nn.Dense(self.num_classes, name='logits')(rnn(x)[:, -1])


def _register_presets() -> None:
  for cell in ('lstm', 'bn_lstm'):
    for permute in (False, True):
      name = f'digits_pixel_{"p" if permute else ""}{cell}'
      zoo.register(name, lambda cell=cell, permute=permute: PixelClassifier(cell=cell,
                                                                            permute=permute),
                   inputs=zoo.image_input(8, 8, 1), apply_kwargs={'train': False}, paper=PAPER,
                   reference_params=None,
                   reference_source='project preset: section 5.1 model on 8x8 digits')


_register_presets()
