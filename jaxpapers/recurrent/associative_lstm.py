"""Associative LSTM: an LSTM whose cell is a redundant holographic (complex-valued) memory.

"Associative Long Short-Term Memory", Danihelka, Wayne, Uria, Kalchbrenner, Graves, 2016,
arXiv:1602.03032, section 4 (building on the redundant associative memory of section 3). With N_h
real hidden units read as n = N_h / 2 complex numbers (real parts first, then imaginary parts):

    g_f, g_i, g_o, r_i, r_o, u  from  W_x x(t) + W_h h(t-1) + b         (one matmul each)
    gates = sigmoid(.)  [n values, each applied to a complex number's real and imaginary part]
    r_i, r_o, u = bound(.)  where bound(z) = z / max(1, |z|) per complex element
    r_{i,s} = P_s r_i,  r_{o,s} = P_s r_o     (P_s: fixed random permutation of the n elements)
    c_s(t) = g_f * c_s(t-1) + r_{i,s} (x) (g_i * u)          (x) = elementwise complex product
    h(t)   = g_o * bound( mean_s r_{o,s} (x) c_s(t) )

for s = 1..N_copies copies of the memory; averaging the copies' reads cancels part of the
interference noise of a holographic store. Parameter count 4.5 (I*N_h + N_h*N_h + N_h).

We could not read the paper's text here: the equations above are as we remember its section 4,
checked against two independent public reimplementations (Theano/Blocks and Torch), which agree on
the gate layout, `bound` and the complex binding (the Torch one keeps a single copy). Choices the
code makes that we could not check against the paper:
  - The output key is used as produced, not conjugated. Conjugation only flips the sign of the
    imaginary half of r_o's pre-activation, which the output-key weights can absorb exactly, so
    both readings define the same family of functions (and, with symmetric initialisers, the same
    distribution at initialisation).
  - The update u reads h(t-1) as well as x(t) (the general form; some experiments in the
    literature set its recurrent weights to zero).
  - The permutations are fixed from `permutation_seed` (not learned); every copy is permuted.
  - `num_copies` defaults to 4; the forget gate's bias starts at 1.0 as in our LSTM baseline; other
    parameters use Flax's default initialisers. Ba et al. 2016 (arXiv:1610.06258), who use this
    cell as a baseline, do not give these settings in the text we could read.

Interface: `cell(carry, x) -> (carry, h)` with carry (memory [..., N_copies, N_h], h [..., N_h]),
and `initialize_carry`, as every cell in `jaxpapers.recurrent`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def bound(z: jax.Array) -> jax.Array:
  """Scales each complex element ([real | imag] halves of the last axis) to modulus <= 1."""
  real, imag = jnp.split(z, 2, axis=-1)
  # sqrt(max(1, |z|^2)) == max(1, |z|) without sqrt's infinite slope at |z| = 0.
  denom = jnp.sqrt(jnp.maximum(1.0, real**2 + imag**2))
  return z / jnp.concatenate([denom, denom], axis=-1)


def complex_multiply(a: jax.Array, b: jax.Array) -> jax.Array:
  """Elementwise product of complex vectors stored as [real | imag] halves of the last axis."""
  a_re, a_im = jnp.split(a, 2, axis=-1)
  b_re, b_im = jnp.split(b, 2, axis=-1)
  return jnp.concatenate([a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re], axis=-1)


def copy_permutations(num_complex: int, num_copies: int, seed: int) -> np.ndarray:
  """[num_copies, 2 * num_complex] indices permuting complex elements, same for both halves."""
  rng = np.random.default_rng(seed)
  perms = np.stack([rng.permutation(num_complex) for _ in range(num_copies)])
  return np.concatenate([perms, perms + num_complex], axis=1)


class AssociativeLSTMCell(nn.RNNCellBase):
  """Associative LSTM with `hidden_size` real units (must be even) and `num_copies` memories."""
  hidden_size: int
  num_copies: int = 4
  permutation_seed: int = 0
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array],
               x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    memory, h = carry
    size = self.hidden_size
    if size % 2:
      raise ValueError(f'hidden_size must be even (pairs of real/imaginary parts), got {size}')
    n = size // 2
    width = 3 * n + 3 * size  # Three gates of n, then r_i, r_o and u of size N_h each.

    def bias_init(key, shape, dtype=jnp.float32):
      del key
      return jnp.zeros(shape, dtype).at[:n].set(self.forget_bias)

    pre = (nn.Dense(width, bias_init=bias_init, name='input')(x)
           + nn.Dense(width, use_bias=False, name='recurrent')(h))
    g_f, g_i, g_o, r_in, r_out, u = jnp.split(
        pre, [n, 2 * n, 3 * n, 3 * n + size, 3 * n + 2 * size], axis=-1)
    # One gate value per complex element, applied to its real and imaginary parts.
    g_f, g_i, g_o = (jnp.concatenate([nn.sigmoid(g)] * 2, axis=-1) for g in (g_f, g_i, g_o))
    r_in, r_out, u = bound(r_in), bound(r_out), bound(u)

    perms = copy_permutations(n, self.num_copies, self.permutation_seed)
    keys_in = jnp.take(r_in, perms, axis=-1)  # [..., num_copies, N_h]
    keys_out = jnp.take(r_out, perms, axis=-1)
    memory = g_f[..., None, :] * memory + complex_multiply(keys_in, (g_i * u)[..., None, :])
    h = g_o * bound(jnp.mean(complex_multiply(keys_out, memory), axis=-2))
    return (memory, h), h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array,
                       input_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    del rng  # The carry starts at zero.
    batch = input_shape[:-1]
    return (jnp.zeros(batch + (self.num_copies, self.hidden_size), jnp.float32),
            jnp.zeros(batch + (self.hidden_size,), jnp.float32))

  @property
  def num_feature_axes(self) -> int:
    return 1
