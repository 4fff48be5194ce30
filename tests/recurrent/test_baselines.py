"""Baselines of the fast-weights paper (IRNN, LSTM, associative LSTM); the shared cell interface."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.recurrent import associative_lstm as alstm
from jaxpapers.recurrent.fast_weights import FastWeightsCell
from jaxpapers.recurrent.irnn import IRNNCell
from jaxpapers.recurrent.lstm import LSTMCell

XS = jax.random.normal(jax.random.key(0), (2, 5, 3))


@pytest.mark.parametrize('cell', [IRNNCell(6), LSTMCell(6), FastWeightsCell(6),
                                  alstm.AssociativeLSTMCell(6, num_copies=3)],
                         ids=lambda c: type(c).__name__)
def test_cells_share_one_interface(cell):
  rnn = nn.RNN(cell, return_carry=True)
  (carry, hs), _ = jax.jit(rnn.init_with_output)(jax.random.key(1), XS)
  chex.assert_shape(hs, (2, 5, 6))
  chex.assert_type(hs, jnp.float32)
  chex.assert_tree_all_finite(hs)
  # The carry after the sequence has the structure and shapes initialize_carry gives.
  chex.assert_trees_all_equal_shapes_and_dtypes(
      carry, cell.initialize_carry(jax.random.key(0), XS[:, 0].shape))


@pytest.mark.parametrize('scale', [1.0, 0.5])
def test_irnn_starts_from_scaled_identity_and_zero_bias(scale):
  params = jax.jit(IRNNCell(4, identity_scale=scale).init)(
      jax.random.key(0), jnp.zeros((1, 4)), jnp.zeros((1, 3)))['params']
  chex.assert_trees_all_equal(params['recurrent']['kernel'], scale * jnp.eye(4))
  chex.assert_trees_all_equal(params['input']['bias'], jnp.zeros(4))


def test_irnn_copies_its_state_when_input_is_silent():
  # Le et al.'s motivation: with W = I, b = 0 and no input, h(t+1) = ReLU(h(t)) = h(t).
  rnn = nn.RNN(IRNNCell(4))
  silent = {'params': {'cell': {'recurrent': {'kernel': jnp.eye(4)},
                                'input': {'kernel': jnp.zeros((3, 4)), 'bias': jnp.zeros(4)}}}}
  h0 = jnp.abs(jax.random.normal(jax.random.key(1), (2, 4)))
  hs = jax.jit(rnn.apply)(silent, XS, initial_carry=h0)
  chex.assert_trees_all_close(hs, jnp.broadcast_to(h0[:, None], (2, 5, 4)))


def test_irnn_step_equation():
  cell = IRNNCell(4)
  h = jax.random.normal(jax.random.key(1), (2, 4))
  shapes = jax.eval_shape(cell.init, jax.random.key(0), h, XS[:, 0])['params']
  params = jax.tree.map(lambda x: jax.random.normal(jax.random.key(2), x.shape), shapes)
  _, out = jax.jit(cell.apply)({'params': params}, h, XS[:, 0])
  want = jax.nn.relu(h @ params['recurrent']['kernel'] + XS[:, 0] @ params['input']['kernel']
                     + params['input']['bias'])
  chex.assert_trees_all_close(out, want, rtol=1e-6)


def test_lstm_matches_flax_lstm_cell():
  size = 4
  ours = nn.RNN(LSTMCell(size))
  got, variables = jax.jit(ours.init_with_output)(jax.random.key(0), XS)
  params = variables['params']['cell']
  w_x, b = params['input']['kernel'], params['input']['bias']
  w_h = params['recurrent']['kernel']
  block = lambda w, k: w[..., k * size:(k + 1) * size]
  flax_params = {}
  for k, gate in enumerate('ifgo'):  # Flax's gate order, which ours follows.
    flax_params['i' + gate] = {'kernel': block(w_x, k)}
    flax_params['h' + gate] = {'kernel': block(w_h, k), 'bias': block(b, k)}
  want = jax.jit(nn.RNN(nn.LSTMCell(size)).apply)({'params': {'cell': flax_params}}, XS)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


def test_lstm_forget_bias_and_bounded_output():
  size = 4
  rnn = nn.RNN(LSTMCell(size))
  # Large inputs saturate the gates.
  hs, variables = jax.jit(rnn.init_with_output)(jax.random.key(0), 10.0 * XS)
  bias = variables['params']['cell']['input']['bias']
  chex.assert_trees_all_equal(bias, jnp.zeros(4 * size).at[size:2 * size].set(1.0))
  assert float(jnp.max(jnp.abs(hs))) < 1.0  # h = sigmoid(o) tanh(c).


def test_bound_limits_modulus_and_keeps_the_unit_disc():
  z = jnp.array([[3.0, 0.1, 0.0, 4.0, 0.2, 0.0]])  # Complex 3+4i, 0.1+0.2i, 0.
  got, vjp = jax.vjp(jax.jit(alstm.bound), z)
  chex.assert_trees_all_close(got, jnp.array([[0.6, 0.1, 0.0, 0.8, 0.2, 0.0]]), rtol=1e-6)
  (grads,) = vjp(jnp.ones_like(z))
  chex.assert_tree_all_finite(grads)  # Including at the complex zero.


def test_complex_multiply_matches_numpy():
  a, b = np.random.default_rng(0).normal(size=(2, 3, 8))
  got = np.asarray(alstm.complex_multiply(jnp.asarray(a), jnp.asarray(b)))
  prod = (a[..., :4] + 1j * a[..., 4:]) * (b[..., :4] + 1j * b[..., 4:])
  np.testing.assert_allclose(got, np.concatenate([prod.real, prod.imag], -1), rtol=1e-5)


def _alstm_reference(params, xs, num_copies, seed):
  """Danihelka et al.'s equations with NumPy complex numbers."""
  w_x, b, w_h = params['input']['kernel'], params['input']['bias'], params['recurrent']['kernel']
  size = w_h.shape[0]
  n = size // 2
  perms = alstm.copy_permutations(n, num_copies, seed)[:, :n]
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  to_complex = lambda v: v[..., :n] + 1j * v[..., n:]
  bound = lambda z: z / np.maximum(1.0, np.abs(z))
  memory = np.zeros((xs.shape[0], num_copies, n), complex)
  h = np.zeros((xs.shape[0], size))
  outputs = []
  for t in range(xs.shape[1]):
    pre = xs[:, t] @ w_x + b + h @ w_h
    g_f, g_i, g_o = (sigmoid(pre[:, k * n:(k + 1) * n]) for k in range(3))
    r_in, r_out, u = (bound(to_complex(pre[:, 3 * n + k * size:3 * n + (k + 1) * size]))
                      for k in range(3))
    memory = g_f[:, None] * memory + r_in[:, perms] * (g_i * u)[:, None]
    read = g_o * bound((r_out[:, perms] * memory).mean(1))
    h = np.concatenate([read.real, read.imag], -1)
    outputs.append(h)
  return np.stack(outputs, 1)


def test_associative_lstm_matches_complex_reference():
  cell = alstm.AssociativeLSTMCell(6, num_copies=3, permutation_seed=7)
  rnn = nn.RNN(cell)
  shapes = jax.eval_shape(rnn.init, jax.random.key(0), XS)['params']
  # Random biases too, so that every gate and key slice is exercised away from its init.
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: 0.5 * rng.normal(size=x.shape).astype(np.float32), shapes)
  got = jax.jit(rnn.apply)({'params': params}, XS)
  want = _alstm_reference(jax.tree.map(np.asarray, params['cell']), np.asarray(XS), 3, 7)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_associative_lstm_copies_use_distinct_permutations():
  perms = alstm.copy_permutations(5, 4, seed=0)
  chex.assert_shape(perms, (4, 10))
  np.testing.assert_array_equal(perms[:, 5:], perms[:, :5] + 5)  # Same for real and imaginary.
  for p in perms[:, :5]:
    np.testing.assert_array_equal(np.sort(p), np.arange(5))
  assert len({tuple(p) for p in perms}) == 4


def test_associative_lstm_rejects_odd_hidden_size():
  with pytest.raises(ValueError, match='even'):
    alstm.AssociativeLSTMCell(5).init(jax.random.key(0), (jnp.zeros((1, 4, 5)), jnp.zeros((1, 5))),
                                      jnp.zeros((1, 3)))
