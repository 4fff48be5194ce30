"""States with several players: a toy game converges through the loop, a GAN-shaped state resumes
bit-identically after SIGKILL, and the buffers and the momentum schedule do what the papers say."""

import os
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import game_config
import game_experiment
from jaxpapers.errors import CheckpointError, NonFiniteLossError
from jaxpapers.train import buffers, checkpoint, devices, loop, optim
from jaxpapers.train.state import GameState, PlayerState, TrainState, sub_batches, unrolled_scan
from test_cli import ROOT, wait_for_checkpoint

TOLERANCE = 0.05  # the runs end within 0.01 of the equilibrium; they start 1.5 to 4.5 away


def saddle_config(updates, n_critic):
  config = game_config.get_config('saddle')
  config.game.update(updates=updates, n_critic=n_critic)
  config.train.batch_size *= n_critic  # each maximiser update sees a batch of the same size
  return config


def play(config, workdir, experiment_class=game_experiment.SaddleGame):
  experiment = experiment_class(config, devices.make_mesh())
  start = experiment.init(jax.random.PRNGKey(0)).players
  loop.train_and_evaluate(experiment, str(workdir))
  end = checkpoint.load_state(workdir)['players']
  return experiment.equilibrium, start, end


@pytest.mark.parametrize('updates, n_critic', [
    ('alternating', 1), ('simultaneous', 1), ('alternating', 5)])
def test_toy_game_reaches_its_equilibrium_through_the_loop(tmp_path, updates, n_critic):
  equilibrium, start, end = play(saddle_config(updates, n_critic), tmp_path)
  for player in ('x', 'y'):
    assert np.abs(start[player].params - equilibrium).min() > 20 * TOLERANCE
    np.testing.assert_allclose(end[player]['params'], equilibrium, atol=TOLERANCE)
  with pytest.raises(CheckpointError, match='has no params but buffers, players, rng, step'):
    checkpoint.load_params(tmp_path)


class MaximiserDescends(game_experiment.SaddleGame):
  def maximiser_grad(self, x, y, a):
    return -super().maximiser_grad(x, y, a)


def test_toy_game_with_the_maximiser_descending_diverges(tmp_path):
  with pytest.raises(NonFiniteLossError):
    play(saddle_config('alternating', 5), tmp_path, MaximiserDescends)


GAN_RUN = ('--config.train.steps=100', '--config.train.checkpoint_every=50',
           '--config.train.log_every=50')


def start_gan(workdir, cache):
  # The three runs compile the same step: the first one's compilation, cached on disk, serves the
  # others (about 5 s of CPU each on this machine).
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.train.game_experiment', '--config=tests/train/game_config.py:gan',
       f'--workdir={workdir}', *GAN_RUN],
      cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_gan_shaped_state_resumes_bit_identically_after_sigkill(tmp_path):
  killed = start_gan(tmp_path / 'killed', tmp_path / 'cache')
  wait_for_checkpoint(killed, tmp_path / 'killed', 50)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert killed.returncode == -signal.SIGKILL
  assert checkpoint.Checkpointer(str(tmp_path / 'killed')).latest_step() < 100
  resumed, straight = start_gan(tmp_path / 'killed', tmp_path / 'cache'), start_gan(
      tmp_path / 'straight', tmp_path / 'cache')
  outputs = [run.communicate(timeout=240)[0] for run in (resumed, straight)]
  assert (resumed.returncode, straight.returncode) == (0, 0), outputs[0][-3000:] + outputs[1][-3000:]
  assert 'resumed from' in outputs[0]

  final = checkpoint.load_state(tmp_path / 'killed')
  chex.assert_trees_all_equal(final, checkpoint.load_state(tmp_path / 'straight'))
  # Every kind of state was there and moved: BatchNorm statistics, the EMA, the pool, the queue.
  generator, discriminator = final['players']['generator'], final['players']['discriminator']
  assert final['step'] == 100
  assert set(discriminator['model_state']['batch_stats']['BatchNorm_0']) == {'mean', 'var'}
  assert np.abs(discriminator['model_state']['batch_stats']['BatchNorm_0']['mean']).max() > 0
  chex.assert_trees_all_equal_structs(generator['ema_params'], generator['params'])
  assert not np.array_equal(generator['ema_params']['Dense_0']['kernel'],
                            generator['params']['Dense_0']['kernel'])
  assert final['buffers']['pool']['count'] == 8
  assert final['buffers']['queue']['pointer'] == (100 * 2 * 8) % 32  # 2 pushes of 8 per step


def test_player_ema_follows_a_traced_decay_and_must_be_given():
  tx = optax.sgd(1.0)
  player = PlayerState.create(params=jnp.zeros(2), tx=tx, ema=True)
  step = jax.jit(lambda p, decay: p.apply_gradients(tx, -jnp.ones(2), ema_decay=decay))
  player = step(player, jnp.float32(0.75))
  np.testing.assert_allclose(player.params, [1.0, 1.0])
  np.testing.assert_allclose(player.ema_params, [0.25, 0.25])  # 0.75 * 0 + 0.25 * 1
  with pytest.raises(ValueError, match='ema_decay must be given'):
    player.apply_gradients(tx, jnp.ones(2))
  with pytest.raises(ValueError, match='ema_decay must be given'):
    PlayerState.create(params=jnp.zeros(2), tx=tx).apply_gradients(tx, jnp.ones(2), ema_decay=0.9)


def test_game_and_train_states_derive_the_same_step_keys():
  rng = jax.random.PRNGKey(3)
  train = TrainState.create(params=jnp.zeros(2), tx=optax.sgd(1.0), rng=rng).replace(step=jnp.int32(7))
  game = GameState.create(rng=rng, players={}).advance()
  game = game.replace(step=game.step + 6)
  assert game.step == 7
  chex.assert_trees_all_equal(game.step_rng('critic', 'noise'), train.step_rng('critic', 'noise'))
  assert not np.array_equal(game.step_rng('critic'), game.step_rng('generator'))
  with pytest.raises(KeyError, match="no player 'critc'"):
    game.replace_player('critc', None)


def test_sub_batches_keep_each_one_spread_over_the_devices():
  batch = jnp.arange(12)
  chex.assert_trees_all_equal(sub_batches({'a': batch}, 3)['a'],
                              jnp.array([[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]))
  with pytest.raises(ValueError, match='does not split into 5'):
    sub_batches(batch, 5)


@pytest.mark.parametrize('length', [1, 3])
def test_unrolled_scan_equals_lax_scan_and_compiles_no_loop(length):
  def update(carry, inputs):
    x, i = inputs
    carry = {'w': carry['w'] * 0.5 + jnp.sin(x) * i}
    return carry, {'norm': jnp.sum(carry['w'] ** 2), 'x': x}

  carry = {'w': jnp.arange(4.0)}
  xs = (jax.random.normal(jax.random.PRNGKey(0), (length, 4)), jnp.arange(length, dtype=jnp.float32))
  chex.assert_trees_all_close(unrolled_scan(update, carry, xs), jax.lax.scan(update, carry, xs))
  lowered = jax.jit(lambda c, x: unrolled_scan(update, c, x)).lower(carry, xs).as_text()
  assert 'stablehlo.while' not in lowered  # the point: XLA:CPU's slow path for loop bodies


def test_ema_momentum_schedule_rises_from_base_to_one():
  schedule = jax.jit(optim.ema_momentum_schedule(0.996, 1000))
  np.testing.assert_allclose(schedule(0), 0.996, rtol=1e-7)
  np.testing.assert_allclose(schedule(500), 0.998, rtol=1e-7)  # halfway: cos = 0
  np.testing.assert_allclose([schedule(1000), schedule(5000)], [1.0, 1.0], rtol=1e-7)
  values = np.array([schedule(k) for k in range(0, 1001, 50)])
  assert np.all(np.diff(values) > 0)


def test_queue_is_first_in_first_out():
  queue = buffers.Queue.create(jnp.arange(6.0)[:, None])  # entries 0..5, 0 the oldest
  push = jax.jit(buffers.Queue.push)
  queue, evicted = push(queue, jnp.array([[10.0], [11.0], [12.0], [13.0]]))
  np.testing.assert_array_equal(evicted[:, 0], [0, 1, 2, 3])
  queue, evicted = push(queue, jnp.array([[14.0], [15.0], [16.0], [17.0]]))
  np.testing.assert_array_equal(evicted[:, 0], [4, 5, 10, 11])  # wrapped around the ring
  assert queue.pointer == 2
  np.testing.assert_array_equal(np.sort(queue.items[:, 0]), [12, 13, 14, 15, 16, 17])
  with pytest.raises(ValueError, match='cannot push 7 examples into a queue of 6'):
    queue.push(jnp.zeros((7, 1)))


def test_image_pool_returns_new_images_until_full_then_a_mixture():
  pool = buffers.ImagePool.create(size=50, image_shape=(2,))
  query = jax.jit(buffers.ImagePool.query)
  images = jnp.arange(400.0)[:, None] * jnp.ones(2)  # image i is filled with the value i
  pool, first = query(pool, images[:200], jax.random.PRNGKey(0))
  pool, second = query(pool, images[200:], jax.random.PRNGKey(1))
  assert pool.count == 50
  returned = np.concatenate([first[:, 0], second[:, 0]]).astype(int)
  new = returned == np.arange(400)
  np.testing.assert_array_equal(new[:50], True)  # until the pool is full, every image comes back
  assert 138 <= np.sum(~new[50:]) <= 212  # then about half of 350 are swapped (mean 175, sd 9.4)
  # A swapped-out image is one stored before: the first 50, or an earlier swapped-in one.
  swapped = np.flatnonzero(~new)
  stored = set(range(50)) | set(swapped.tolist())
  for i in swapped:
    assert returned[i] < i and returned[i] in stored
  # The pool holds what went in less what came out.
  np.testing.assert_array_equal(np.sort(pool.images[:, 0]),
                                sorted(stored - set(returned[swapped].tolist())))
