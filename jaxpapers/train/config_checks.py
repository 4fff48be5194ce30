"""Checks of the config values the loop and the optimisers read, before anything is built.

One place for every experiment: a bad value is reported in one line naming the key (ConfigError,
exit status 2), instead of a run that silently does nothing or a traceback from deep inside JAX.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from jaxpapers.errors import ConfigError

# config.train keys that must be positive integers; eval_every may also be 0 (no periodic eval).
POSITIVE_TRAIN_KEYS = ('steps', 'batch_size', 'log_every', 'checkpoint_every', 'max_to_keep')


def check_values(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first train interval or learning rate the loop cannot run with."""
  train = config.train
  for key in POSITIVE_TRAIN_KEYS:
    _check_integer(f'config.train.{key}', train[key], minimum=1)
  _check_integer('config.train.eval_every', train.eval_every, minimum=0,
                 meaning='a non-negative integer (0: evaluate only at the end)')
  for name, value in _learning_rates(config, 'config'):
    # 0 is allowed: a run that only evaluates, or holds a player still.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
        or value < 0:
      raise ConfigError(f'{name}={value!r} must be a finite non-negative number')


def _check_integer(name: str, value: Any, minimum: int, meaning: str = 'a positive integer') -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(f'{name}={value!r} must be {meaning}')


def _learning_rates(node: ml_collections.ConfigDict, path: str):
  """Every `learning_rate` in the config, wherever it sits (one optimiser, or one per player)."""
  for key, value in node.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _learning_rates(value, f'{path}.{key}')
    elif key == 'learning_rate':
      yield f'{path}.{key}', value
