"""The command line shared by every experiment.

    python -m experiments.<name> --config=experiments/configs/<name>.py[:preset] --workdir=runs/x \
        [--config.train.steps=1000 ...] [--multihost [--coordinator_address=host:port
        --num_processes=N --process_id=i]]

A config file defines `get_config(preset)`; `--config.<key>=<value>` overrides any key it defines.
Mistakes the user can fix (an unknown key or preset, a bad value, missing data, a diverged run, an
unusable checkpoint) are reported in one line, with the valid choices, and exit status 2 or 1.
"""

from __future__ import annotations

import importlib.util
import logging as logging_std
import os
import sys
from typing import Callable, Sequence

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxpapers.errors import ConfigError, UserError
from jaxpapers.train import config_checks, devices
from jaxpapers.train.loop import Experiment, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file('config', None, 'experiments/configs/<name>.py[:preset]')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, TensorBoard events and results.json go '
                               'here; relaunching with the same workdir resumes the run.')
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Join a multi-process run with '
                               'jax.distributed.initialize() (set on every TPU VM pod worker).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (not needed '
                                   'on TPU VMs, where it is discovered).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run (not needed on TPU VMs).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (not needed on TPU VMs).')


def check_overrides(argv: Sequence[str]) -> None:
  """Loads the config named by --config and checks every --config.<key> override names a real key."""
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    raise ConfigError('--config=experiments/configs/<name>.py[:preset] is required')
  path, _, preset = spec.partition(':')
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path} does not exist')
  module_spec = importlib.util.spec_from_file_location('_experiment_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(preset or None)
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    keys = arg[len('--config.'):].split('=', 1)[0].split('.')
    node = config
    for depth, key in enumerate(keys):
      if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        where = 'config' + ''.join(f'.{k}' for k in keys[:depth])
        valid = ', '.join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else ''
        raise ConfigError(f'unknown config key {".".join(keys)!r}: {where} has no key {key!r}'
                          + (f'; valid keys: {valid}' if valid else f' ({where} is a value)'))
      node = node[key]


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    check_overrides(argv)
    return flags.FLAGS(argv)
  except (ConfigError, flags.Error) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


class _OwnInfoOnly(logging_std.Filter):
  """Keeps INFO lines from this project only (orbax and JAX log dozens per checkpoint), and drops
  orbax's errors: they repeat, with tracebacks from its background threads, each failure that the
  Checkpointer raises as one line."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    if f'{os.sep}orbax{os.sep}' in record.pathname:
      return record.levelno == logging_std.WARNING
    return record.levelno >= logging_std.WARNING or f'{os.sep}jaxpapers{os.sep}' in record.pathname \
        or f'{os.sep}experiments{os.sep}' in record.pathname


def _ignore_closed_event_loops(unraisablehook):
  """sys.unraisablehook without TensorStore's tracebacks of 'Event loop is closed': after a failed
  checkpoint write, its remaining futures complete into the event loop orbax has already closed."""

  def hook(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'):
      unraisablehook(unraisable)

  return hook


def run(experiment_class: type[Experiment]) -> None:
  """The `main` of an experiment module: parse flags, start the processes, train and evaluate."""
  run_program(lambda config, workdir, mesh: train_and_evaluate(experiment_class(config, mesh),
                                                               workdir))


def run_program(program: Callable[[ml_collections.ConfigDict, str, jax.sharding.Mesh], dict]
                ) -> None:
  """The `main` of an experiment that is not one training loop (several runs, then a figure):
  `program(config, workdir, mesh)` gets the same flags, processes, logging and one-line errors as
  `run`, and returns its results (logged at the end)."""

  def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if _WORKDIR.value is None:
      print('error: --workdir is required', file=sys.stderr)
      sys.exit(2)
    logging.get_absl_handler().addFilter(_OwnInfoOnly())
    sys.unraisablehook = _ignore_closed_event_loops(sys.unraisablehook)
    if _MULTIHOST.value:
      devices.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    try:
      config_checks.check_values(_CONFIG.value)
      results = program(_CONFIG.value, _WORKDIR.value, devices.make_mesh())
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2 if isinstance(e, ConfigError) else 1)
    logging.info('done: %s', {k: v for k, v in results.items() if k != 'config'})

  app.run(main, flags_parser=_parse_flags)
