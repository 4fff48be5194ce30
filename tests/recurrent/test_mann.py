"""MANN (Santoro et al. 2016): least-recently-used writes, content reads, labels shifted by one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.recurrent import mann

USAGE = np.array([[0.9, 0.2, 0.7, 0.05, 0.4], [0.1, 0.8, 0.6, 0.3, 0.95]], np.float32)


def test_least_used_weights_pick_the_least_used_slots_in_order():
  lu = mann.least_used_weights(USAGE, 2)
  chex.assert_shape(lu, (2, 2, 5))
  np.testing.assert_array_equal(np.argmax(lu, -1), [[3, 1], [0, 3]])
  np.testing.assert_array_equal(lu.sum(-1), np.ones((2, 2)))


def test_closed_gate_writes_the_key_to_the_least_used_slot_after_clearing_it():
  rng = np.random.default_rng(0)
  memory = rng.standard_normal((2, 5, 3)).astype(np.float32)
  keys = rng.standard_normal((2, 1, 3)).astype(np.float32)
  previous_read = jax.nn.softmax(rng.standard_normal((2, 1, 5)).astype(np.float32))
  lu = mann.least_used_weights(USAGE, 1)
  w = mann.write_weights(jnp.full((2, 1), -40.0), previous_read, lu)
  new = np.asarray(mann.write(memory, w, lu, keys))
  want = memory.copy()
  for b, slot in enumerate(np.argmin(USAGE, -1)):
    want[b, slot] = keys[b, 0]  # Cleared, then the key written with weight 1.
  np.testing.assert_allclose(new, want, atol=1e-6)
  # An open gate writes where the last read looked; the least-used slot is still cleared.
  w = mann.write_weights(jnp.full((2, 1), 40.0), previous_read, lu)
  chex.assert_trees_all_close(w, previous_read)
  new = np.asarray(mann.write(memory, w, lu, keys))
  want = memory + np.asarray(previous_read)[:, 0, :, None] * keys
  for b, slot in enumerate(np.argmin(USAGE, -1)):
    want[b, slot] = previous_read[b, 0, slot] * keys[b, 0]
  np.testing.assert_allclose(new, want, atol=1e-6)


def test_cell_writes_only_to_the_least_used_slot_when_its_gate_is_shut():
  cell = mann.MANNCell(hidden_size=6, memory_slots=5, memory_size=3, num_reads=1)
  x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  params = jax.jit(cell.init)(jax.random.key(0), carry, x)['params']
  params['write_gate']['bias'] = jnp.full_like(params['write_gate']['bias'], -40.0)
  memory = np.random.default_rng(2).standard_normal((2, 5, 3)).astype(np.float32)
  carry = (carry[0], memory, carry[2] + 0.2, USAGE, carry[4])
  new_carry, out = jax.jit(cell.apply)({'params': params}, carry, x)
  changed = np.abs(np.asarray(new_carry[1]) - memory).max(-1) > 1e-6
  np.testing.assert_array_equal(changed, np.eye(5, dtype=bool)[np.argmin(USAGE, -1)])
  chex.assert_shape(out, (2, 6 + 3))
  # Usage decays and gains this step's read and write weights (Eq. 5): one unit of each.
  np.testing.assert_allclose(np.asarray(new_carry[3]).sum(-1), 0.95 * USAGE.sum(-1) + 2.0,
                             rtol=1e-5)


def test_reads_favour_the_slot_matching_the_key():
  memory = np.concatenate([np.eye(3), np.ones((1, 3))]).astype(np.float32)[None]
  w = mann.read_weights(memory, np.array([[[0.0, 2.0, 0.0]]], np.float32), strength=10.0)
  # Cosines 0, 1, 0 and 1/sqrt(3), times the strength 10.
  chex.assert_trees_all_close(w[0, 0], jax.nn.softmax(10.0 * np.array([0, 1, 0, 3 ** -0.5], np.float32)),
                              atol=1e-5)


def test_the_label_input_is_the_previous_steps_label():
  model = mann.OneShotMANN(num_classes=3, hidden_size=8, memory_slots=6, memory_size=4, num_reads=2)
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 5, 7)).astype(np.float32)
  y = rng.integers(0, 3, (2, 5)).astype(np.int32)
  params = jax.jit(model.init)(jax.random.key(0), x, y)
  logits = jax.jit(model.apply)(params, x, y)
  chex.assert_shape(logits, (2, 5, 3))
  # Changing the label of the last step cannot change any output (it is never an input) ...
  y2 = y.copy()
  y2[:, -1] = (y2[:, -1] + 1) % 3
  chex.assert_trees_all_close(jax.jit(model.apply)(params, x, y2), logits)
  # ... while the label of step t changes outputs from step t + 1 on, not before.
  y3 = y.copy()
  y3[:, 2] = (y3[:, 2] + 1) % 3
  diff = np.abs(np.asarray(jax.jit(model.apply)(params, x, y3)) - np.asarray(logits)).max((0, 2))
  assert np.all(diff[:3] < 1e-6) and np.all(diff[3:] > 1e-6), diff
