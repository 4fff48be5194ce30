"""MANN: a memory-augmented network with least-recently-used access, for one-shot learning.

"One-shot Learning with Memory-Augmented Neural Networks", Santoro, Bartunov, Botvinick, Wierstra,
Lillicrap, 2016, arXiv:1605.06065, sections 2 and 3.

Task (section 2.1). An episode is a sequence (x_1, null), (x_2, y_1), ..., (x_T, y_{T-1}): the
network sees each input with the *previous* step's label, so it must bind an input's content to
the label it learns one step later and recall the binding when the class comes back. Labels are
shuffled across episodes, so no class-to-label mapping can be stored in the weights.

Controller and memory (section 3). An LSTM controller reads [x_t, y_{t-1}, r_{t-1}] (the last read
vectors as extra inputs, as in the Neural Turing Machine) and emits, per read head, a key k_t and a
write gate alpha_t. Memory M_t is N slots of size M.

  Reading, Eqs. (2)-(4): w^r_t(i) = softmax_i K(k_t, M_t(i)) with cosine similarity K,
    r_t = sum_i w^r_t(i) M_t(i).
  Usage, Eq. (5): w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t.
  Least used, Eq. (6): w^lu_t(i) = 1 for the n least used slots of w^u_t (n = number of reads),
    0 elsewhere.
  Writing (LRUA), Eqs. (7)-(8): w^w_t = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1};
    the least-used slots (from w^u_{t-1}) are zeroed first, then M_t(i) = M_{t-1}(i) + w^w_t(i) k_t.

The write either refreshes the slot just read (sigmoid(alpha) near 1: new information about a
class already stored) or fills an unused one (near 0: a new class). The output is a softmax of
a linear map of [h_t, r_t].

Interpretations and departures:
  * With n read heads, Eq. (6) marks n slots; here head j's least-used weights are the one-hot of
    the j-th least used slot, so the heads together cover the paper's n slots and each writes its
    key to its own slot (the paper does not say how several heads share w^lu).
  * Read keys get a learned strength beta_t = 1 + softplus(.) multiplying the cosine (the NTM's
    key strength; not in MANN's Eq. (2)): with cosines in [-1, 1] a softmax over 128 slots is
    nearly flat, and the short CPU runs here did not learn without it (`key_strength=False` is the
    paper's form).
  * Keys are tanh of a linear map of h_t; memory starts at 1e-6 (so cosines are defined), usage
    and read weights at 0. gamma = 0.95; the paper gives no value in the text we read.
  * Sizes default to the paper's Omniglot model: LSTM of 200 units, 128 slots of 40, 4 read heads.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.recurrent.lstm import LSTMCell

PAPER = ('One-shot Learning with Memory-Augmented Neural Networks (Santoro, Bartunov, Botvinick, '
         'Wierstra, Lillicrap 2016, arXiv:1605.06065)')


def least_used_weights(usage: jax.Array, num_heads: int) -> jax.Array:
  """[..., N] usage -> [..., heads, N]: head j's one-hot of the j-th least used slot (Eq. 6)."""
  _, slots = jax.lax.top_k(-usage, num_heads)  # Ties go to the lower slot index.
  return jax.nn.one_hot(slots, usage.shape[-1], dtype=usage.dtype)


def write_weights(gate: jax.Array, previous_read: jax.Array, least_used: jax.Array) -> jax.Array:
  """Eq. (7): sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}; gate [..., heads]."""
  g = jax.nn.sigmoid(gate)[..., None]
  return g * previous_read + (1.0 - g) * least_used


def write(memory: jax.Array, weights: jax.Array, least_used: jax.Array,
          keys: jax.Array) -> jax.Array:
  """Eq. (8): zero the least-used slots, then add w^w(i) k to every slot i. memory [..., N, M]."""
  cleared = memory * (1.0 - jnp.clip(jnp.sum(least_used, axis=-2), 0.0, 1.0))[..., None]
  return cleared + jnp.einsum('...hn,...hm->...nm', weights, keys)


def read_weights(memory: jax.Array, keys: jax.Array, strength: jax.Array | float = 1.0
                 ) -> jax.Array:
  """Eqs. (2)-(3): softmax over slots of (strength times) the cosine of each head's key."""
  eps = 1e-8
  cosine = jnp.einsum('...hm,...nm->...hn', keys, memory) / (
      jnp.linalg.norm(keys, axis=-1)[..., :, None] * jnp.linalg.norm(memory, axis=-1)[..., None, :]
      + eps)
  return jax.nn.softmax(strength * cosine, axis=-1)


class MANNCell(nn.RNNCellBase):
  """One step of the MANN. Carry: (LSTM (c, h), memory [..., N, M], read weights [..., H, N],
  usage [..., N], read vectors [..., H * M]). Output: [h_t, r_t], [..., hidden + H * M]."""
  hidden_size: int = 200
  memory_slots: int = 128
  memory_size: int = 40
  num_reads: int = 4
  gamma: float = 0.95
  key_strength: bool = True

  @nn.compact
  def __call__(self, carry, x):
    lstm_carry, memory, previous_read, usage, reads = carry
    heads, size = self.num_reads, self.memory_size
    lstm_carry, h = LSTMCell(self.hidden_size, name='controller')(
        lstm_carry, jnp.concatenate([x, reads], axis=-1))
    keys = jnp.tanh(nn.Dense(heads * size, name='key')(h)).reshape(h.shape[:-1] + (heads, size))
    gate = nn.Dense(heads, name='write_gate')(h)
    least_used = least_used_weights(usage, heads)  # From w^u_{t-1}.
    w_write = write_weights(gate, previous_read, least_used)
    memory = write(memory, w_write, least_used, keys)
    strength = 1.0
    if self.key_strength:
      strength = 1.0 + nn.softplus(nn.Dense(heads, name='key_strength')(h))[..., None]
    w_read = read_weights(memory, keys, strength)
    read = jnp.einsum('...hn,...nm->...hm', w_read, memory).reshape(h.shape[:-1] + (heads * size,))
    usage = self.gamma * usage + jnp.sum(w_read, axis=-2) + jnp.sum(w_write, axis=-2)
    return (lstm_carry, memory, w_read, usage, read), jnp.concatenate([h, read], axis=-1)

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    del rng
    batch = input_shape[:-1]
    zeros = jnp.zeros(batch + (self.hidden_size,), jnp.float32)
    return ((zeros, zeros),
            jnp.full(batch + (self.memory_slots, self.memory_size), 1e-6, jnp.float32),
            jnp.zeros(batch + (self.num_reads, self.memory_slots), jnp.float32),
            jnp.zeros(batch + (self.memory_slots,), jnp.float32),
            jnp.zeros(batch + (self.num_reads * self.memory_size,), jnp.float32))

  @property
  def num_feature_axes(self) -> int:
    return 1


class OneShotMANN(nn.Module):
  """inputs [B, T, D] and labels [B, T] (the true labels; shifted by one step here) -> logits [B, T, C].

  The label input at step t is one_hot(y_{t-1}), zeros at t = 0 (section 2.1).
  """
  num_classes: int = 5
  hidden_size: int = 200
  memory_slots: int = 128
  memory_size: int = 40
  num_reads: int = 4
  gamma: float = 0.95
  key_strength: bool = True

  @nn.compact
  def __call__(self, inputs: jax.Array, labels: jax.Array) -> jax.Array:
    previous = jax.nn.one_hot(labels[:, :-1], self.num_classes, dtype=inputs.dtype)
    previous = jnp.pad(previous, ((0, 0), (1, 0), (0, 0)))
    cell = MANNCell(self.hidden_size, self.memory_slots, self.memory_size, self.num_reads,
                    self.gamma, self.key_strength, name='cell')
    outputs = nn.RNN(cell, name='rnn')(jnp.concatenate([inputs, previous], axis=-1))
    return nn.Dense(self.num_classes, name='logits')(outputs)


def _register_presets() -> None:
  inputs = lambda: (jax.ShapeDtypeStruct((1, 50, 64), jnp.float32),
                    jax.ShapeDtypeStruct((1, 50), jnp.int32))
  zoo.register('mann', OneShotMANN, inputs=inputs, paper=PAPER, reference_params=None,
               reference_source='not reported; section 3 sizes (LSTM 200, 128 x 40 memory, 4 reads)')
  zoo.register('mann_tiny', lambda: OneShotMANN(hidden_size=16, memory_slots=8, memory_size=4,
                                                num_reads=2),
               inputs=inputs, paper=PAPER, reference_params=None, reference_source='tests')


_register_presets()
