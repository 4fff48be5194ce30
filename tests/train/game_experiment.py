"""Two-player experiments for the tests of `GameState`, run by the real loop (and CLI):

    python -m tests.train.game_experiment --config=tests/train/game_config.py:gan --workdir=/tmp/gan

`SaddleGame` plays f(x, y; a) = |x|^2 / 2 + x.y - |y|^2 / 2 - x.a (x minimises, y maximises), with
a the mean of a batch: strongly convex in x, strongly concave in y, so the unique equilibrium,
x = y = E[a] / 2, attracts both alternating and simultaneous gradient play. `GanShaped` has every
kind of state a GAN, BYOL/MoCo or CycleGAN keeps: players with their own Adam, BatchNorm statistics,
an EMA copy of the generator on BYOL's momentum schedule, an image pool and a queue.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.train import buffers, cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import GameState, PlayerState, sub_batches, unrolled_scan


def saddle_value(x, y, a):
  return 0.5 * jnp.sum(x * x) + jnp.sum(x * y) - 0.5 * jnp.sum(y * y) - jnp.sum(x * a)


class SaddleGame(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    g, d = config.game, config.data
    if g.updates not in ('alternating', 'simultaneous'):
      raise ConfigError(f'config.game.updates={g.updates!r}; valid: alternating, simultaneous')
    if g.updates == 'simultaneous' and g.n_critic != 1:
      raise ConfigError('config.game.n_critic > 1 needs config.game.updates=alternating')
    rng = np.random.default_rng(config.seed)
    a = rng.normal(d.mean, d.stddev, (d.size, g.dim)).astype(np.float32)
    self.data = pipeline.Splits(train=pipeline.ArrayRows({'a': a}))
    self.equilibrium = a.mean(0) / 2
    self.minimiser_tx = optax.sgd(g.minimiser_learning_rate)
    self.maximiser_tx = optax.sgd(g.maximiser_learning_rate, momentum=g.maximiser_momentum)

  def init(self, rng):
    start = jnp.full((self.config.game.dim,), 3.0)
    return GameState.create(rng=rng, players={
        'x': PlayerState.create(params=start, tx=self.minimiser_tx),
        'y': PlayerState.create(params=-start, tx=self.maximiser_tx)})

  def maximiser_grad(self, x, y, a):
    """What y's optimiser (a minimiser, as every optax one) descends: the gradient of -f."""
    return jax.grad(lambda y: -saddle_value(x, y, a))(y)

  def train_step(self, state: GameState, batch):
    x, y = state.players['x'], state.players['y']
    a = batch['a']
    if self.config.game.updates == 'simultaneous':
      x_grad = jax.grad(saddle_value)(x.params, y.params, a.mean(0))
      y_grad = self.maximiser_grad(x.params, y.params, a.mean(0))
      x, y = x.apply_gradients(self.minimiser_tx, x_grad), y.apply_gradients(self.maximiser_tx, y_grad)
    else:
      def maximiser_update(y, sub_batch):
        grad = self.maximiser_grad(x.params, y.params, sub_batch.mean(0))
        return y.apply_gradients(self.maximiser_tx, grad), None
      y, _ = unrolled_scan(maximiser_update, y, sub_batches(a, self.config.game.n_critic))
      x = x.apply_gradients(self.minimiser_tx, jax.grad(saddle_value)(x.params, y.params, a.mean(0)))
    state = state.replace_player('x', x).replace_player('y', y).advance()
    return state, {'loss': saddle_value(x.params, y.params, a.mean(0))}


class Generator(nn.Module):
  hidden: int
  image_shape: tuple[int, ...]

  @nn.compact
  def __call__(self, z):
    h = nn.relu(nn.Dense(self.hidden)(z))
    return jnp.tanh(nn.Dense(int(np.prod(self.image_shape)))(h)).reshape(-1, *self.image_shape)


class Discriminator(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, images, train: bool):
    h = nn.Dense(self.hidden)(images.reshape(images.shape[0], -1))
    features = nn.leaky_relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h), 0.2)
    return nn.Dense(1)(features)[:, 0], features


class GanShaped(Experiment):
  """A non-saturating GAN on 4x4 images with n_critic discriminator updates per round, the
  discriminator fed from an image pool, and a feature-matching term for the generator against a
  queue of the discriminator's features of recent real images."""

  image_shape = (4, 4, 1)

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    g, d = config.game, config.data
    rng = np.random.default_rng(config.seed)
    pattern = np.where(np.indices(self.image_shape).sum(0) % 2, 0.8, -0.8)  # a checkerboard
    images = pattern + rng.normal(0, d.stddev, (d.size, *self.image_shape))
    self.data = pipeline.Splits(train=pipeline.ArrayRows({'image': images.astype(np.float32)}))
    self.generator = Generator(g.hidden, self.image_shape)
    self.discriminator = Discriminator(g.hidden)
    self.generator_tx = optax.adam(g.learning_rate, b1=0.5)
    self.discriminator_tx = optax.adam(g.learning_rate, b1=0.5)
    self.ema_decay = optim.ema_momentum_schedule(g.ema_base, config.train.steps)

  def init(self, rng):
    g = self.config.game
    g_key, d_key, q_key = jax.random.split(rng, 3)
    generator = self.generator.init(g_key, jnp.zeros((1, g.z_dim)))
    discriminator = self.discriminator.init(d_key, jnp.zeros((1, *self.image_shape)), train=False)
    return GameState.create(rng=rng, players={
        'generator': PlayerState.create(params=generator['params'], tx=self.generator_tx, ema=True),
        'discriminator': PlayerState.create(
            params=discriminator['params'], tx=self.discriminator_tx,
            model_state={'batch_stats': discriminator['batch_stats']}),
    }, buffers={
        'pool': buffers.ImagePool.create(g.pool_size, self.image_shape),
        'queue': buffers.Queue.create(jax.random.normal(q_key, (g.queue_size, g.hidden))),
    })

  def fakes(self, params, key, count):
    z = jax.random.normal(key, (count, self.config.game.z_dim))
    return self.generator.apply({'params': params}, z)

  def discriminator_update(self, state: GameState, inputs):
    real, index = inputs
    fake_key, pool_key = jax.random.split(jax.random.fold_in(state.step_rng('discriminator'), index))
    fake = self.fakes(state.players['generator'].params, fake_key, real.shape[0])
    pool, fake = state.buffers['pool'].query(fake, pool_key)
    player = state.players['discriminator']

    def loss_fn(params):
      (logits, features), model_state = self.discriminator.apply(
          {'params': params, **player.model_state}, jnp.concatenate([real, fake]), train=True,
          mutable=['batch_stats'])
      real_logits, fake_logits = jnp.split(logits, 2)
      loss = jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
      return loss, (model_state, features[:real.shape[0]])

    (loss, (model_state, real_features)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        player.params)
    queue, _ = state.buffers['queue'].push(real_features)
    state = state.replace_player(
        'discriminator', player.apply_gradients(self.discriminator_tx, grads, model_state))
    return state.replace_buffer('pool', pool).replace_buffer('queue', queue), loss

  def train_step(self, state: GameState, batch):
    n = self.config.game.n_critic
    reals = sub_batches(batch['image'], n)
    state, discriminator_losses = unrolled_scan(
        self.discriminator_update, state, (reals, jnp.arange(n)))
    player, critic = state.players['generator'], state.players['discriminator']
    queued = state.buffers['queue'].items

    def loss_fn(params):
      fake = self.fakes(params, state.step_rng('generator'), reals.shape[1])
      # The discriminator's batch statistics move in its own update only.
      (logits, features), _ = self.discriminator.apply(
          {'params': critic.params, **critic.model_state}, fake, train=True, mutable=['batch_stats'])
      matching = jnp.sum((features.mean(0) - queued.mean(0)) ** 2)
      return jnp.mean(jax.nn.softplus(-logits)) + self.config.game.feature_matching * matching

    loss, grads = jax.value_and_grad(loss_fn)(player.params)
    player = player.apply_gradients(self.generator_tx, grads, ema_decay=self.ema_decay(state.step))
    state = state.replace_player('generator', player).advance()
    return state, {'loss': loss, 'discriminator_loss': discriminator_losses.mean()}


if __name__ == '__main__':
  cli.run(GanShaped)
