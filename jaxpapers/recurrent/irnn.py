"""IRNN: a ReLU recurrent network whose recurrent matrix starts as a (scaled) identity.

"A Simple Way to Initialize Recurrent Networks of Rectified Linear Units", Le, Jaitly, Hinton, 2015,
arXiv:1504.00941, section 3: h(t+1) = ReLU(W h(t) + C x(t) + b) with W initialised to the identity
and b to zero, so that with no input the hidden state is copied unchanged from step to step and
error derivatives neither vanish nor explode at the start of training. The paper also scales the
identity down for tasks with shorter-range dependencies (so that the past is forgotten);
`identity_scale` covers both. The input matrix C is not part of the recipe; it uses Flax's default
LeCun-normal initialiser.

Ba et al. 2016 ("Using Fast Weights to Attend to the Recent Past", arXiv:1610.06258) use the IRNN as
a baseline; the parts of that paper we could read do not restate the identity scale, so the
default is Le et al.'s 1.0.

The cell follows Flax's `RNNCellBase` convention shared by every cell in `jaxpapers.recurrent`:
`cell(carry, x) -> (carry, h)` on inputs [..., features] and `initialize_carry(rng, input_shape)`,
so `nn.RNN(cell)` scans it over a batch-first sequence.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def scaled_identity(scale: float = 1.0) -> nn.initializers.Initializer:
  """Initialiser returning `scale * I` for a square [n, n] kernel."""

  def init(key, shape, dtype=jnp.float32):
    del key  # Deterministic.
    if len(shape) != 2 or shape[0] != shape[1]:
      raise ValueError(f'scaled_identity needs a square 2-D kernel, got shape {shape}')
    return scale * jnp.eye(shape[0], dtype=dtype)

  return init


class IRNNCell(nn.RNNCellBase):
  """h(t+1) = ReLU(W h(t) + C x(t) + b), W = identity_scale * I and b = 0 at initialisation.

  Carry: h [..., hidden_size]. Parameters: W (R*R) + C (I*R) + b (R).
  """
  hidden_size: int
  identity_scale: float = 1.0

  @nn.compact
  def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    recurrent = nn.Dense(self.hidden_size, use_bias=False,
                         kernel_init=scaled_identity(self.identity_scale), name='recurrent')
    inputs = nn.Dense(self.hidden_size, name='input')  # Its bias is b, zero at init.
    h = nn.relu(recurrent(carry) + inputs(x))
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
    del rng  # The carry starts at zero.
    return jnp.zeros(input_shape[:-1] + (self.hidden_size,), jnp.float32)

  @property
  def num_feature_axes(self) -> int:
    return 1
