"""The train state: one pytree holding everything a run needs to continue exactly where it stopped."""

from __future__ import annotations

import zlib
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


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
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               model_state=model_state if model_state is not None else {},
               ema_params=params if ema_decay is not None else None, rng=rng, ema_decay=ema_decay)

  def step_rng(self, *names: str) -> jax.Array:
    """A key for this step, the same whatever the device count, so runs are reproducible and resumable."""
    key = jax.random.fold_in(self.rng, self.step)
    for name in names:
      key = jax.random.fold_in(key, _stable_hash(name))
    return key

  def apply_gradients(self, tx: optax.GradientTransformation, grads: Any,
                      model_state: Any = None) -> TrainState:
    """One optimiser update; also advances the EMA of the parameters when the run keeps one."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema_params = self.ema_params
    if self.ema_decay is not None:
      ema_params = optax.incremental_update(params, self.ema_params, 1.0 - self.ema_decay)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state,
                        model_state=self.model_state if model_state is None else model_state,
                        ema_params=ema_params)


def _stable_hash(name: str) -> int:
  # Python's hash() is salted per process; the key derivation must be the same in every process.
  return zlib.crc32(name.encode())
