"""Fast-weights RNN and the associative-retrieval classifier of Ba et al. 2016.

"Using Fast Weights to Attend to the Recent Past", Ba, Hinton, Mnih, Leibo, Ionescu, NIPS 2016,
arXiv:1610.06258.

The cell (sections 3 and 3.1). Slow weights W (hidden to hidden) and C (input to hidden) are learned
by backpropagation; the fast weights A are a per-sequence memory rebuilt on every step by a decaying
Hebbian outer product, Eq. (1):

    A(t) = lambda A(t-1) + eta h(t) h(t)^T,        A(0) = 0, h(0) = 0.

The next hidden state comes from a preliminary state and S inner-loop "settling" steps in which the
slow-weight term is held fixed as a boundary condition, with layer normalisation on every inner
step, Eqs. (2) and (5):

    h_0(t+1)     = f(W h(t) + C x(t))
    h_{s+1}(t+1) = f(LN[W h(t) + C x(t) + A(t) h_s(t+1)]),   s = 0..S-1
    h(t+1)       = h_S(t+1),   f = ReLU.

Unrolling Eq. (1) gives the attention form of Eqs. (3)-(4), which `fast_weights_readout`
implements: A(t) h = eta sum_{tau <= t} lambda^{t - tau} h(tau) (h(tau)^T h), a decaying dot-product
attention over past hidden states. `FastWeightsCell` keeps its memory in either form, as section 3.1
does for mini-batches (each sequence has its own A, so A is never built there): with
`memory_length=0` it carries (A(t), h(t)) and applies Eq. (1); with `memory_length=L` it carries
(the last L states h(t-L+1)..h(t), h(t)) and reads A(t) h_s by Eq. (4). The two give the same
states for sequences of at most L steps; per step the matrix form costs O(R^2) per sequence and
the attention form O(L R), and the backward pass of the scan stores each step's carry, O(T R^2)
against O(T L R). `RetrievalClassifier` therefore uses the attention form whenever its sequences
are no longer than R (the paper's retrieval sequences have 2K + 3 = 11 steps, R is 20 to 100):
at R = 100 it trains 4.4x slower than at R = 50 with the matrix form and about 2x slower with
the attention form (`WORKSPACE.md`, CPU performance).

(The paper prints Eq. (3) with the sum ending at tau = t - 1 and exponent t - tau - 1, i.e.
without h(t); with Eq. (1) as written, A(t) already holds h(t), which is what the recurrence
here and the readout both use. The two differ only by whether the most recent state is in
memory.) The tests check the scanned cell against an explicit unrolled reference built on the
attention form, for several S.

Settings. The paper's full text was not available to us while writing this; the settings below
are from our reading of it, cross-checked against a detailed section-by-section summary. Section
3.1 states that, unless noted otherwise, fast-weight models use layer norm, fast learning rate
eta = 0.5 and decay lambda = 0.95; those are the defaults here, with S = 1. The survey's notes, and
that summary of the paper's appendix, also quote lambda = 0.9 (we could not check for which
experiment), so lambda is an argument. The equations have no bias on W h + C x; LN's learned gain
and bias (initialised to 1 and 0) supply the affine part of the inner loop, and h_0 has no bias.
We found no statement of the slow weights' initialisation: W starts as 0.05 I (IRNN-style scaled
identity, the value several public reimplementations use) and C uses Flax's LeCun-normal default.

The classifier (section 4.1). Characters are embedded by a learned 100-dimensional table; a single
recurrent layer reads the sequence; its output at the last step goes through a hidden layer of 100
ReLUs and a softmax. The paper says only "the final softmax layer"; since every target is a digit,
ours is 10-way (the 27 other symbols could never be correct). `RetrievalClassifier(cell=...)` swaps
the recurrent layer for the paper's baselines: 'irnn', 'lstm' and 'associative_lstm'. With
vocabulary V = 37, embedding E = 100, hidden layer M = 100, K = 10 classes and R recurrent units,
its parameter count is `num_params(cell, R)`:

    V E + cell(R) + (R M + M) + (M K + K), where cell(R) =
      fast_weights      R^2 + E R + 2 R        (W, C, LN gain and bias; R^2 + E R without LN)
      irnn              R^2 + E R + R
      lstm              4 (E R + R^2 + R)
      associative_lstm  4.5 (E R + R^2 + R)    (R even)

The paper does not report parameter counts, so the zoo presets registered below (Table 1's
R = 20, 50, 100 for every cell) carry no reference figure.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.recurrent.associative_lstm import AssociativeLSTMCell
from jaxpapers.recurrent.irnn import IRNNCell, scaled_identity
from jaxpapers.recurrent.lstm import LSTMCell

PAPER = ('Using Fast Weights to Attend to the Recent Past (Ba, Hinton, Mnih, Leibo, Ionescu 2016, '
         'arXiv:1610.06258)')

CELLS = ('fast_weights', 'irnn', 'lstm', 'associative_lstm')


def fast_weights_readout(past_hidden: jax.Array, query: jax.Array, decay: float,
                         fast_lr: float) -> jax.Array:
  """A(t) q in the attention form of Eq. (4), without building A.

  Args:
    past_hidden: [..., T, H] the states h(1)..h(t) written to memory, oldest first.
    query: [..., H] the vector A(t) is applied to (h_s(t+1) in the inner loop).
    decay: lambda.
    fast_lr: eta.

  Returns:
    [..., H] eta * sum_tau lambda^(t - tau) h(tau) (h(tau)^T query).
  """
  steps = past_hidden.shape[-2]
  weights = decay ** jnp.arange(steps - 1, -1, -1)  # Newest state gets weight 1.
  scores = jnp.einsum('...th,...h->...t', past_hidden, query)
  return fast_lr * jnp.einsum('...t,...th->...h', weights * scores, past_hidden)


class FastWeightsCell(nn.RNNCellBase):
  """The layer-normalised fast-weights RNN cell, Eqs. (1), (2) and (5).

  Carry, zero at the start of a sequence: (A [..., R, R], h [..., R]) with `memory_length=0`
  (Eq. (1)); (past states [..., L, R], oldest first, h [..., R]) with `memory_length=L` (Eq. (4),
  exact for sequences of at most L steps: an older state would be dropped).
  """
  hidden_size: int
  decay: float = 0.95  # lambda
  fast_lr: float = 0.5  # eta
  inner_steps: int = 1  # S
  layer_norm: bool = True
  recurrent_identity_scale: float = 0.05
  memory_length: int = 0  # 0: the fast-weight matrix A; L > 0: the last L states (attention form).

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array],
               x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    memory, h = carry
    recurrent = nn.Dense(self.hidden_size, use_bias=False,
                         kernel_init=scaled_identity(self.recurrent_identity_scale),
                         name='recurrent')  # W
    inputs = nn.Dense(self.hidden_size, use_bias=False, name='input')  # C
    # One LN (one gain and bias) normalises every inner step.
    norm = nn.LayerNorm(name='layer_norm') if self.layer_norm else (lambda z: z)
    if self.memory_length:
      # Slots not yet written are zero and add nothing to the readout.
      read = lambda q: fast_weights_readout(memory, q, self.decay, self.fast_lr)
    else:
      read = lambda q: jnp.einsum('...ij,...j->...i', memory, q)

    boundary = recurrent(h) + inputs(x)  # Held fixed through the inner loop.
    h_next = nn.relu(boundary)  # h_0(t+1)
    for _ in range(self.inner_steps):  # S is static and small; time is scanned, not unrolled.
      h_next = nn.relu(norm(boundary + read(h_next)))
    if self.memory_length:
      memory = jnp.concatenate([memory[..., 1:, :], h_next[..., None, :]], axis=-2)
    else:
      memory = self.decay * memory + self.fast_lr * h_next[..., :, None] * h_next[..., None, :]
    return (memory, h_next), h_next

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array,
                       input_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    del rng  # The carry starts at zero.
    batch = input_shape[:-1]
    memory_rows = self.memory_length or self.hidden_size
    return (jnp.zeros(batch + (memory_rows, self.hidden_size), jnp.float32),
            jnp.zeros(batch + (self.hidden_size,), jnp.float32))

  @property
  def num_feature_axes(self) -> int:
    return 1


class RetrievalClassifier(nn.Module):
  """Section 4.1's network: embedding -> one recurrent layer -> 100 ReLUs -> softmax logits.

  `apply(variables, tokens)` maps int tokens [batch, time] to logits [batch, num_classes] for the
  answer. The recurrent layer is scanned over time with `nn.RNN` (batch-first).
  """
  cell: str = 'fast_weights'  # One of CELLS.
  hidden_size: int = 50  # R
  vocab_size: int = 37  # 26 letters, 10 digits, '?'.
  embed_dim: int = 100
  mlp_hidden: int = 100
  num_classes: int = 10
  # Fast-weights settings (ignored by the other cells).
  decay: float = 0.95
  fast_lr: float = 0.5
  inner_steps: int = 1
  layer_norm: bool = True
  # Associative-LSTM setting.
  num_copies: int = 4

  def make_cell(self, steps: int) -> nn.RNNCellBase:
    """The recurrent cell for sequences of `steps` tokens; called inside `__call__`, so its
    parameters sit under 'cell'."""
    if self.cell == 'fast_weights':
      # The cheaper memory form for this length (same states either way; see the module docstring).
      return FastWeightsCell(self.hidden_size, decay=self.decay, fast_lr=self.fast_lr,
                             inner_steps=self.inner_steps, layer_norm=self.layer_norm,
                             memory_length=steps if steps <= self.hidden_size else 0, name='cell')
    if self.cell == 'irnn':
      return IRNNCell(self.hidden_size, name='cell')
    if self.cell == 'lstm':
      return LSTMCell(self.hidden_size, name='cell')
    if self.cell == 'associative_lstm':
      return AssociativeLSTMCell(self.hidden_size, num_copies=self.num_copies, name='cell')
    raise ValueError(f'unknown cell {self.cell!r}; choose one of {", ".join(CELLS)}')

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = nn.Embed(self.vocab_size, self.embed_dim, name='embed')(tokens)
    outputs = nn.RNN(self.make_cell(tokens.shape[1]), name='rnn')(x)
    h = nn.relu(nn.Dense(self.mlp_hidden, name='hidden')(outputs[:, -1]))
    return nn.Dense(self.num_classes, name='logits')(h)


def num_params(cell: str, hidden_size: int, vocab_size: int = 37, embed_dim: int = 100,
               mlp_hidden: int = 100, num_classes: int = 10, layer_norm: bool = True) -> int:
  """Closed-form parameter count of `RetrievalClassifier` (see the module docstring)."""
  r, e = hidden_size, embed_dim
  recurrent = {
      'fast_weights': r * r + e * r + (2 * r if layer_norm else 0),
      'irnn': r * r + e * r + r,
      'lstm': 4 * (e * r + r * r + r),
      'associative_lstm': 9 * (e * r + r * r + r) // 2,
  }[cell]
  return (vocab_size * embed_dim + recurrent + r * mlp_hidden + mlp_hidden
          + mlp_hidden * num_classes + num_classes)


def _register_presets() -> None:
  inputs = lambda: (jax.ShapeDtypeStruct((1, 11), jnp.int32),)  # K = 4 pairs: 11 tokens.
  for cell in CELLS:
    for size in (20, 50, 100):  # Table 1's numbers of recurrent units.
      zoo.register(
          f'retrieval_{cell}_r{size}',
          lambda cell=cell, size=size: RetrievalClassifier(cell=cell, hidden_size=size),
          inputs=inputs, paper=PAPER, reference_params=None,
          reference_source='not reported in the paper (section 4.1, Table 1)')


_register_presets()
