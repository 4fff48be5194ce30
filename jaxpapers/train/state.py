"""The train state: one pytree holding everything a run needs to continue exactly where it stopped.

`TrainState` is the state of a run with one model. Papers with several players (a GAN's generator
and discriminator, BYOL's online and target networks, MoCo's encoder and key queue, CycleGAN's image
pools) keep a `GameState`: a step counter, a PRNG key, one `PlayerState` per player (parameters,
optimiser state, model state, optional EMA/target copy) and named buffers (`jaxpapers.train.buffers`).
It is one pytree like `TrainState`, so the loop compiles, shards, checkpoints and resumes it unchanged.

The one pattern for updating several players: **one jitted train step is one round of the game**.
`train_step` calls each player's update as plain Python (traced once, compiled once into the step)
and ends with `state.advance()`, so the loop's step, logs and checkpoints count rounds:

* alternating: update the critic, then compute the generator's loss against the updated critic;
* simultaneous: take every player's gradients at the same parameters, then apply them all;
* n critic updates per generator update (WGAN, WGAN-GP: n_critic = 5): the global batch holds
  n * B examples, `sub_batches(batch, n)` gives it a leading axis of n, and `unrolled_scan` runs the
  critic's updates over it before the generator's one. (Skipping the generator on n - 1 of every n
  steps with `lax.cond` would also compile once, but would make a round n loop steps and compute
  or mask a generator update that is thrown away.)
* extra work every k rounds (StyleGAN2's lazy R1 and path-length terms): the experiment's
  `step_options(step)` passes a static flag to `train_step`, so those rounds are a second compiled
  step rather than a `lax.cond` branch (see `Experiment.step_options` for why).

The loop's guard reads `metrics['loss']`: report there a value that goes non-finite when any
player diverges (the generator's loss, which every critic update feeds, or the sum of the losses).

    def train_step(self, state: GameState, batch):
      def critic_update(state, inputs):
        real, index = inputs
        key = jax.random.fold_in(state.step_rng('critic'), index)
        critic = state.players['critic']
        loss, grads = jax.value_and_grad(self.critic_loss)(
            critic.params, state.players['generator'].params, real, key)
        return state.replace_player('critic', critic.apply_gradients(self.critic_tx, grads)), loss

      n = self.config.n_critic
      state, critic_losses = unrolled_scan(
          critic_update, state, (sub_batches(batch['image'], n), jnp.arange(n)))
      generator = state.players['generator']
      loss, grads = jax.value_and_grad(self.generator_loss)(
          generator.params, state.players['critic'].params, state.step_rng('generator'))
      generator = generator.apply_gradients(self.generator_tx, grads,
                                            ema_decay=self.ema_schedule(state.step))
      state = state.replace_player('generator', generator).advance()
      return state, {'loss': loss, 'critic_loss': critic_losses.mean()}

Target networks are a player's `ema_params`: BYOL's target is the online player's, updated with
`ema_decay=optim.ema_momentum_schedule(0.996, steps)(state.step)`; MoCo's key encoder is the query
player's with `ema_decay=0.999`, its keys pushed into a `buffers.Queue` kept in `state.buffers`
(`state.replace_buffer('queue', queue)`); CycleGAN's discriminators read their fakes through a
`buffers.ImagePool` of 50.

`tests/train/game_experiment.py` runs both patterns on a game with a known equilibrium, and a
GAN-shaped state (BatchNorm statistics, an EMA generator, an image pool, a queue) through the CLI.
"""

from __future__ import annotations

import operator
import zlib
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class PlayerState:
  """One player of a game: parameters, optimiser state, model state, EMA (target) parameters.

  `ema_params` is None for a player that keeps no moving average of its parameters. The decay is
  given at each update rather than stored, as it may follow a schedule (BYOL's tau goes from 0.996
  to 1 over training: `optim.ema_momentum_schedule`) and so be a traced value.
  """
  params: Any
  opt_state: Any
  model_state: Any  # non-parameter collections, e.g. {'batch_stats': ...}; {} if none.
  ema_params: Any

  @classmethod
  def create(cls, *, params: Any, tx: optax.GradientTransformation, model_state: Any = None,
             ema: bool = False) -> PlayerState:
    return cls(params=params, opt_state=tx.init(params),
               model_state=model_state if model_state is not None else {},
               ema_params=params if ema else None)

  def apply_gradients(self, tx: optax.GradientTransformation, grads: Any, model_state: Any = None,
                      ema_decay: float | jax.Array | None = None) -> PlayerState:
    """One optimiser update, then `ema <- decay * ema + (1 - decay) * params` for a player with an EMA.

    A player that keeps an EMA must be given its decay at every update (pass 1.0 to hold it), so a
    target network cannot stay frozen because a step forgot it.
    """
    if (ema_decay is None) != (self.ema_params is None):
      raise ValueError('ema_decay must be given exactly when the player keeps EMA parameters '
                       f'(it {"does not keep" if self.ema_params is None else "keeps"} them)')
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema_params = self.ema_params
    if ema_decay is not None:
      ema_params = optax.incremental_update(params, self.ema_params, 1.0 - ema_decay)
    return self.replace(params=params, opt_state=opt_state, ema_params=ema_params,
                        model_state=self.model_state if model_state is None else model_state)


@flax.struct.dataclass
class TrainState:
  """step, parameters, optimiser state, model state (e.g. batch statistics), EMA parameters, PRNG key.

  The state is pure data: the optimiser (`tx`) is the experiment's, built once, and passed to
  `apply_gradients`, so two calls of `init` give states of identical tree structure. `ema_decay` is
  static: it describes the run rather than holds values.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  ema_params: Any  # None when the paper keeps no moving average of the weights.
  rng: jax.Array  # raw uint32 key; per-step keys are derived with `step_rng`, never split in place.
  ema_decay: float | None = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, *, params: Any, tx: optax.GradientTransformation, rng: jax.Array,
             model_state: Any = None, ema_decay: float | None = None) -> TrainState:
    player = PlayerState.create(params=params, tx=tx, model_state=model_state,
                                ema=ema_decay is not None)
    return cls(step=jnp.zeros((), jnp.int32), params=player.params, opt_state=player.opt_state,
               model_state=player.model_state, ema_params=player.ema_params, rng=rng,
               ema_decay=ema_decay)

  @classmethod
  def init_model(cls, model: Any, example_input: jax.Array, *, tx: optax.GradientTransformation,
                 rng: jax.Array) -> TrainState:
    """The state of `model` initialised on `example_input` in evaluation mode: its 'params' are
    trained, its other collections (batch statistics) become `model_state`."""
    params_rng, dropout_rng = jax.random.split(rng)
    variables = model.init({'params': params_rng, 'dropout': dropout_rng}, example_input,
                           train=False)
    params = variables.pop('params')
    return cls.create(params=params, tx=tx, rng=rng, model_state=dict(variables))

  def step_rng(self, *names: str) -> jax.Array:
    """A key for this step, the same whatever the device count, so runs are reproducible and resumable."""
    return _step_key(self.rng, self.step, names)

  def apply_gradients(self, tx: optax.GradientTransformation, grads: Any,
                      model_state: Any = None) -> TrainState:
    """One optimiser update; also advances the EMA of the parameters when the run keeps one."""
    player = PlayerState(params=self.params, opt_state=self.opt_state, model_state=self.model_state,
                         ema_params=self.ema_params)
    player = player.apply_gradients(tx, grads, model_state, ema_decay=self.ema_decay)
    return self.replace(step=self.step + 1, params=player.params, opt_state=player.opt_state,
                        model_state=player.model_state, ema_params=player.ema_params)


@flax.struct.dataclass
class GameState:
  """step, PRNG key, the players by name and the non-parameter buffers by name (queues, pools)."""
  step: jax.Array
  rng: jax.Array  # raw uint32 key, as TrainState's.
  players: dict[str, PlayerState]
  buffers: dict[str, Any]

  @classmethod
  def create(cls, *, rng: jax.Array, players: dict[str, PlayerState],
             buffers: dict[str, Any] | None = None) -> GameState:
    return cls(step=jnp.zeros((), jnp.int32), rng=rng, players=dict(players),
               buffers=dict(buffers or {}))

  def step_rng(self, *names: str) -> jax.Array:
    """A key for this step, derived exactly as `TrainState.step_rng`."""
    return _step_key(self.rng, self.step, names)

  def replace_player(self, name: str, player: PlayerState) -> GameState:
    _check_name(name, self.players, 'player')
    return self.replace(players={**self.players, name: player})

  def replace_buffer(self, name: str, buffer: Any) -> GameState:
    _check_name(name, self.buffers, 'buffer')
    return self.replace(buffers={**self.buffers, name: buffer})

  def advance(self) -> GameState:
    """The state after one round: call once at the end of each train step."""
    return self.replace(step=self.step + 1)


def apply_training(model: Any, params: Any, model_state: Any, *inputs: Any, rngs: Any = None,
                   **kwargs: Any) -> tuple[Any, Any]:
  """(outputs, updated model state) of a player's `model` in training mode: its non-parameter
  collections (batch statistics) are updated and returned, or passed through when it has none."""
  variables = {'params': params, **model_state}
  if not model_state:
    return model.apply(variables, *inputs, train=True, rngs=rngs, **kwargs), model_state
  outputs, updated = model.apply(variables, *inputs, train=True, rngs=rngs,
                                 mutable=list(model_state), **kwargs)
  return outputs, dict(updated)


def unrolled_scan(f: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any) -> tuple[Any, Any]:
  """`jax.lax.scan(f, carry, xs)` traced as one call of f per entry of xs' leading axis.

  For the few player updates of one round (n_critic), not for long loops. XLA:CPU computes the
  convolution gradients inside a while-loop body with its naive loop emitter (it brings only the
  entry computation's convolutions into the layouts its fast kernels take), and `lax.scan` emits a
  while loop at every length when `unroll` is 1, which `unroll=True` also becomes at length 1. A
  32x32 DCGAN round (n_critic = 1) took 4.5 s as a scan against 0.2 s unrolled (2-core CPU,
  jaxlib 0.12.0.1); on accelerators unrolling costs a little compile time only.
  """
  n = jax.tree.leaves(xs)[0].shape[0]
  outputs = []
  for i in range(n):
    carry, y = f(carry, jax.tree.map(operator.itemgetter(i), xs))
    outputs.append(y)
  return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)


def sub_batches(batch: Any, n: int) -> Any:
  """Splits every array of a global batch of n * B examples into n sub-batches of B: shape (n, B, ...).

  Sub-batch i takes examples i, i + n, i + 2n, ...: the batch is sharded over devices in contiguous
  blocks, so this split leaves every sub-batch spread evenly over the devices, with no data moved.
  """
  def split(x):
    if x.shape[0] % n:
      raise ValueError(f'a batch of {x.shape[0]} examples does not split into {n} sub-batches')
    return jnp.moveaxis(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 1, 0)
  return jax.tree.map(split, batch)


def _check_name(name: str, table: dict[str, Any], kind: str) -> None:
  # A misspelt name would otherwise add a new entry, and the state's tree structure would change.
  if name not in table:
    raise KeyError(f'no {kind} {name!r}; the state has {", ".join(sorted(table)) or "none"}')


def _step_key(rng: jax.Array, step: jax.Array, names: tuple[str, ...]) -> jax.Array:
  key = jax.random.fold_in(rng, step)
  for name in names:
    key = jax.random.fold_in(key, _stable_hash(name))
  return key


def _stable_hash(name: str) -> int:
  # Python's hash() is salted per process; the key derivation must be the same in every process.
  return zlib.crc32(name.encode())
