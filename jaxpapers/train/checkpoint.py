"""Checkpoints with orbax: the train state and the data iterator's position, saved together.

Restoring goes into an abstract state (shapes, dtypes and shardings from `jax.eval_shape` of the
experiment's `init`), so a run saved on 8 devices resumes on 1 and the other way round. Each save
records a fingerprint of the state's bits, checked on restore; resuming takes the newest checkpoint
that restores and matches it, moving damaged newer ones aside.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxpapers.errors import CheckpointError


class _FailedSaveEchoes(std_logging.Filter):
  """Drops asyncio's "exception was never retrieved" reports (a traceback each) after a save has
  failed: orbax writes an array's pieces concurrently, re-raises the first failure and leaves its
  sibling writes' failures (the same full disk or lost store) to be reported when they are garbage
  collected, at a time that varies from run to run. The `CheckpointError` names the cause once."""
  failed = False

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (self.failed and 'exception was never retrieved' in record.getMessage())


_FAILED_SAVE_ECHOES = _FailedSaveEchoes()
std_logging.getLogger('asyncio').addFilter(_FAILED_SAVE_ECHOES)


def _register_array_handler() -> None:
  """orbax splits the writing of each replicated array between its replicas by default (on CPU and
  TPU), slicing it with a jitted slice compiled per shape and device: on 8 CPU devices the first save
  of 60 small arrays took 15.4 s against 0.35 s without (WORKSPACE.md, issue 16). Only arrays whose
  per-replica slice reaches 1 MiB are split here, where the parallel write pays for the compile."""
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  absl_logger.setLevel(std_logging.ERROR)  # Its warning that the default handler is replaced.
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=1 << 20),
        override=True)
  finally:
    absl_logger.setLevel(level)


_register_array_handler()


class Checkpointer:
  """Periodic and final checkpoints under `<workdir>/checkpoints`, keeping the latest `max_to_keep`.

  Every failure to save or restore is raised as one CheckpointError naming the step's directory and
  the cause; a save that fails in orbax's background threads is raised by the next `save`, `wait`
  or `close`.
  """

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = checkpoint_directory(workdir)
    self._saving_step: int | None = None
    try:
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
    except Exception as e:  # An unwritable or unreachable --workdir.
      raise CheckpointError(f'cannot use {self.directory} for checkpoints ({_one_line(e)})') from e

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict[str, Any]) -> None:
    """Starts an asynchronous save; device buffers are copied before this returns."""
    self.wait()  # orbax would too: done here, a failure of the previous save names its own step.
    self._saving_step = step
    fingerprint = {'fingerprint': int(jax.device_get(_fingerprint(state)))}
    with self._save_errors():
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state, custom_metadata=fingerprint),
          data=ocp.args.JsonSave(data_state)))

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores (state, data_state) at `step` (default: the latest), raising CheckpointError."""
    step = self.latest_step() if step is None else step
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      metadata = getattr(self._manager.item_metadata(step)['state'], 'custom_metadata', None)
      saved = (metadata or {}).get('fingerprint')  # None in checkpoints saved before fingerprints
      if saved is not None and saved != int(jax.device_get(_fingerprint(restored.state))):
        raise ValueError('its arrays differ from the fingerprint saved with them')
    except Exception as e:  # orbax raises ValueError, JSONDecodeError, KeyError, ... by cause.
      raise CheckpointError(f'cannot restore the checkpoint in {self.directory}/{step} '
                            f'({_one_line(e)})') from e
    return restored.state, restored.data

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """(step, state, data_state) of the newest checkpoint that restores; None if there is none.

    Newer checkpoints that fail to restore (corrupt, truncated, partly written) are each reported
    in one warning line and moved aside to `<step>.corrupt-<n>`, where orbax no longer lists them.
    When none restores, nothing is moved and the newest one's error is raised: every checkpoint
    failing usually means another configuration wrote them.
    """
    failures = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state, data_state = self.restore(abstract_state, step)
      except CheckpointError as e:
        failures.append((step, e))
        continue
      for failed_step, error in failures:
        aside = self._move_aside(failed_step)
        logging.warning('%s; moved it to %s and resuming from step %d', error, aside, step)
      if failures:
        self._manager.reload()  # orbax caches the list of steps.
      return step, state, data_state
    if failures:
      step, error = failures[0]
      raise CheckpointError(
          f'{error}. No checkpoint in {self.directory} restores ({len(failures)} tried): they are '
          'corrupt or were written by a different configuration; use a new --workdir, or move '
          'them aside') from error
    return None

  def _move_aside(self, step: int) -> str:
    directory = epath.Path(self.directory)
    n = 1
    while (directory / f'{step}.corrupt-{n}').exists():
      n += 1
    aside = directory / f'{step}.corrupt-{n}'
    if jax.process_index() == 0:
      (directory / str(step)).rename(aside)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint {step} moved aside')
    return str(aside)

  def wait(self) -> None:
    with self._save_errors():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the last save to finish, then stops orbax's background threads."""
    try:
      self.wait()
    finally:
      self._manager.close()

  @contextlib.contextmanager
  def _save_errors(self):
    try:
      yield
    except Exception as e:  # OSError, TensorStore's ValueError, a remote store's own errors...
      _FAILED_SAVE_ECHOES.failed = True
      raise CheckpointError(f'cannot save the checkpoint {self.directory}/{self._saving_step} '
                            f'({_one_line(e)}); the earlier checkpoints are kept') from e


@jax.jit
def _fingerprint(tree: Any) -> jax.Array:
  """The sum, modulo 2**32, of the bits of every array in `tree`.

  orbax keeps no checksum of array data: a flipped byte restores silently. This sum is exact and
  independent of the order of reduction, so it is the same on any device count or platform.
  """
  total = jnp.zeros((), jnp.uint32)
  for leaf in jax.tree.leaves(tree):
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if leaf.dtype == jnp.bool_:
      leaf = leaf.astype(jnp.uint8)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[leaf.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(leaf, unsigned)  # 8-byte values become uint32 pairs
    total += jnp.sum(bits.astype(jnp.uint32), dtype=jnp.uint32)
  return total


def _one_line(error: Exception) -> str:
  """The error's type and the first line of its message, cut in the middle if it is long: orbax and
  TensorStore put the kind of failure first and its cause (e.g. the OS error) last."""
  lines = str(error).strip().splitlines()
  text = f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__
  return text if len(text) <= 320 else f'{text[:150]} ... {text[-150:]}'


def checkpoint_directory(workdir: str) -> str:
  """`<workdir>/checkpoints`, absolute for local paths; remote paths (gs://...) are kept as they are."""
  workdir = str(workdir)
  return f'{workdir if "://" in workdir else os.path.abspath(workdir)}/checkpoints'


def load_params(workdir: str, step: int | None = None) -> Any:
  """The trained parameters of a `TrainState` run as NumPy arrays (see `load_state`)."""
  return load_variables(workdir, step)['params']


def load_variables(workdir: str, step: int | None = None) -> dict[str, Any]:
  """A `TrainState` run's Flax variables, {'params': ..., plus its model state (batch_stats...)}."""
  state = load_state(workdir, step)
  if 'params' not in state:
    raise CheckpointError(f'the state saved in {checkpoint_directory(workdir)} has no params but '
                          f'{", ".join(state)} (a GameState?): read its players with load_state')
  return {'params': state['params'], **(state.get('model_state') or {})}


def load_state(workdir: str, step: int | None = None) -> Any:
  """The whole saved state of a run (a `TrainState` or `GameState`) as nested dicts of NumPy arrays,
  for evaluation and analysis outside the loop.

  Works whatever topology the run was saved from (8 devices, 2 processes, a TPU pod).
  """
  directory = checkpoint_directory(workdir)
  manager = ocp.CheckpointManager(directory)
  step = manager.latest_step() if step is None else step
  manager.close()
  if step is None:
    raise CheckpointError(f'no checkpoint in {directory}: train the run first')
  return restore_as_numpy(f'{directory}/{step}/state')


def restore_as_numpy(path: str) -> Any:
  """The tree of an orbax `StandardCheckpointer` checkpoint at `path` as NumPy arrays, restored
  onto one local device from its own metadata, whatever topology wrote it."""
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  tree = jax.device_get(checkpointer.restore(path, target))
  checkpointer.close()
  return tree
