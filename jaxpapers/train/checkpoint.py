"""Checkpoints with orbax: the train state and the data iterator's position, saved together.

Restoring goes into an abstract state (shapes, dtypes and shardings from `jax.eval_shape` of the
experiment's `init`), so a run saved on 8 devices resumes on 1 and the other way round.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxpapers.errors import CheckpointError


class Checkpointer:
  """Periodic and final checkpoints under `<workdir>/checkpoints`, keeping the latest `max_to_keep`."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = checkpoint_directory(workdir)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict[str, Any]) -> None:
    """Starts an asynchronous save; device buffers are copied before this returns."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)))

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores (state, data_state) at `step` (default: the latest), raising CheckpointError."""
    step = self.latest_step() if step is None else step
    path = f'{self.directory}/{step}'
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises ValueError, JSONDecodeError, KeyError, ... by cause.
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise CheckpointError(
          f'cannot restore the checkpoint in {path} ({type(e).__name__}: {reason[:300]}). It is '
          'corrupt or was written by a different configuration; delete it to resume from an '
          'earlier one, or use a new --workdir.') from e
    return restored.state, restored.data

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


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
  path = f'{directory}/{step}/state'
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  return jax.device_get(checkpointer.restore(path, target))
