"""Experiment configs: plain `get_config(preset)` functions returning an ml_collections ConfigDict.

A config names its networks by zoo preset (`model = dict(name=...)`), its data, optimiser and
evaluators; it imports nothing from `jaxpapers.train`, so loading one registers no flags and builds
nothing.
"""

from typing import Callable

import ml_collections

from jaxpapers.errors import ConfigError

# The XLA:CPU kernels of the run's compiled steps (`jaxpapers.train.devices.CPU_KERNELS`): XLA's
# defaults unless a preset measured better; no effect off CPU.
TRAIN_DEFAULTS = {'cpu_kernels': 'xla'}


def select(preset: str | None, table: dict[str, Callable[[], ml_collections.ConfigDict]],
           default: str) -> ml_collections.ConfigDict:
  """The config of `preset` (or `default` when none is given) from a file's table of presets, with
  the training loop's optional keys at their defaults where the preset leaves them out."""
  preset = preset or default
  if preset not in table:
    raise ConfigError(f'unknown preset {preset!r}; valid presets: {", ".join(table)}')
  config = table[preset]()
  if 'train' in config:
    for key, value in TRAIN_DEFAULTS.items():
      if key not in config.train:
        config.train[key] = value
  return config
