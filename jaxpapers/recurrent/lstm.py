"""LSTM cell in the common forget-gate form.

"Long Short-Term Memory", Hochreiter & Schmidhuber, 1997 (Neural Computation 9(8)), with the forget
gate of Gers, Schmidhuber & Cummins 2000 ("Learning to Forget"), as now standard:

    i, f, g, o = split(W_x x(t) + W_h h(t) + b)
    c(t+1) = sigmoid(f) * c(t) + sigmoid(i) * tanh(g)
    h(t+1) = sigmoid(o) * tanh(c(t+1))

No peepholes. The four gates share one input and one recurrent matmul (gate order i, f, g, o, as
in `flax.linen.LSTMCell`, which the tests match exactly once the forget bias is equal). The forget
gate's bias starts at `forget_bias` = 1.0 (Gers et al. 2000; Jozefowicz et al. 2015) so the cell
remembers by default early in training; the other biases start at 0. Recurrent kernels are
orthogonal and input kernels LeCun-normal, as in Flax.

Used as the LSTM baseline of "Using Fast Weights to Attend to the Recent Past" (Ba et al. 2016,
arXiv:1610.06258), whose text does not give its LSTM's initialisation.

Interface: `cell(carry, x) -> (carry, h)` with carry (c, h), and `initialize_carry`, as every cell
in `jaxpapers.recurrent`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class LSTMCell(nn.RNNCellBase):
  """Forget-gate LSTM. Carry: (c, h), each [..., hidden_size]. Parameters: 4 (I*R + R*R + R)."""
  hidden_size: int
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array],
               x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    c, h = carry
    size = self.hidden_size

    def bias_init(key, shape, dtype=jnp.float32):
      del key
      return jnp.zeros(shape, dtype).at[size:2 * size].set(self.forget_bias)

    gates = (nn.Dense(4 * size, bias_init=bias_init, name='input')(x)
             + nn.Dense(4 * size, use_bias=False, kernel_init=nn.initializers.orthogonal(),
                        name='recurrent')(h))
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array,
                       input_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    del rng  # The carry starts at zero.
    zeros = jnp.zeros(input_shape[:-1] + (self.hidden_size,), jnp.float32)
    return zeros, zeros

  @property
  def num_feature_axes(self) -> int:
    return 1
