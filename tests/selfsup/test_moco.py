"""MoCo: InfoNCE (eq. 1), the key queue is FIFO, the key encoder is the momentum average (eq. 2)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers.selfsup import moco
from jaxpapers.train.state import PlayerState


def test_infonce_equals_eq1_and_sends_no_gradient_to_keys():
  rng = np.random.default_rng(0)
  q, k, queue = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(7, 5))
  queue = queue / np.linalg.norm(queue, axis=1, keepdims=True)
  unit = lambda x: x / np.linalg.norm(x)
  expected = np.mean([
      -math.log(math.exp(unit(qi) @ unit(ki) / 0.07)
                / (math.exp(unit(qi) @ unit(ki) / 0.07) + sum(math.exp(unit(qi) @ n / 0.07)
                                                              for n in queue)))
      for qi, ki in zip(q, k)])
  np.testing.assert_allclose(moco.infonce_loss(q, k, queue), expected, rtol=1e-5)
  grad_q, grad_k, grad_queue = jax.grad(moco.infonce_loss, argnums=(0, 1, 2))(
      jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue))
  assert float(jnp.abs(grad_q).sum()) > 0
  chex.assert_trees_all_equal((grad_k, grad_queue), (jnp.zeros_like(grad_k), jnp.zeros_like(grad_queue)))


def test_queue_is_fifo_of_normalised_keys():
  queue = moco.initial_queue(jax.random.key(0), size=6, dim=3)
  np.testing.assert_allclose(jnp.linalg.norm(queue.items, axis=1), 1.0, rtol=1e-6)
  enqueue = jax.jit(moco.enqueue)
  batches = [jnp.full((2, 3), float(i + 1)) for i in range(5)]  # batch i: keys all equal to i + 1
  for batch in batches:
    queue = enqueue(queue, batch)
  # Size 6 holds the last three batches of two; the oldest (batch 2) is next to go.
  unit = 1 / math.sqrt(3)
  held = np.asarray(queue.items)
  np.testing.assert_allclose(held, unit, rtol=1e-6)  # stored normalised
  assert int(queue.pointer) == 10 % 6
  queue = enqueue(queue, jnp.array([[1.0, 0, 0], [0, 1.0, 0]]))
  # The two slots overwritten are those written longest ago (batch 3, at slots 4 and 5).
  np.testing.assert_array_equal(np.asarray(queue.items[4:6]), [[1, 0, 0], [0, 1, 0]])
  np.testing.assert_array_equal(np.asarray(queue.items[:4]), held[:4])


def test_key_encoder_is_the_momentum_average_of_the_query_encoder():
  params = {'w': jnp.ones((3,)), 'b': jnp.zeros(())}
  tx = optax.sgd(0.1)
  player = PlayerState.create(params=params, tx=tx, ema=True)
  key_params = params
  for step in range(3):
    grads = {'w': jnp.arange(3.0) + step, 'b': jnp.ones(())}
    player = jax.jit(lambda p, g: p.apply_gradients(tx, g, ema_decay=moco.MOMENTUM))(player, grads)
    # Eq. (2), after the query encoder's update: theta_k <- m theta_k + (1 - m) theta_q.
    key_params = jax.tree.map(lambda k, q: moco.MOMENTUM * k + (1 - moco.MOMENTUM) * q, key_params,
                              player.params)
    chex.assert_trees_all_close(player.ema_params, key_params, rtol=1e-6)
  assert moco.MOMENTUM == 0.999 and moco.TEMPERATURE == 0.07
  assert not np.allclose(player.ema_params['w'], player.params['w'])
