"""The one training loop every experiment runs: sharded jit step, eval, checkpoints, metrics, guards.

An experiment subclasses `Experiment` and supplies only what is specific to its paper: how to build
the state, one train step, one eval step and its data. Everything else lives here:

* the train step is compiled once with `jax.jit`: state replicated, the batch sharded over the
  `data` axis, the state and the metric accumulator donated;
* metrics are summed on the device inside the compiled step, so the host waits for the device only
  when it logs or checkpoints (and, on a multi-device CPU mesh, for each step before dispatching
  the next: see `_wait_for_previous_step`);
* the first non-finite loss stops the run with a message naming the step, before anything computed
  from it is checkpointed;
* SIGTERM (a TPU VM preemption) saves a checkpoint and returns cleanly; relaunching the same
  command resumes from the latest checkpoint, data position included.
"""

from __future__ import annotations

import abc
import signal
import time
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jaxpapers.data import pipeline
from jaxpapers.errors import NonFiniteLossError
from jaxpapers.train import checkpoint as checkpoint_lib
from jaxpapers.train import devices
from jaxpapers.train import metrics as metrics_lib
from jaxpapers.train.state import TrainState

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


class Experiment(abc.ABC):
  """What a paper's experiment supplies to the loop. Every method but the data ones is pure.

  The loop reads `config.seed` and `config.train` (steps, batch_size, log_every, eval_every,
  checkpoint_every, max_to_keep); the rest of the config belongs to the experiment.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config = config
    self.mesh = mesh

  @abc.abstractmethod
  def init(self, rng: jax.Array) -> TrainState:
    """The initial train state from a PRNG key (traced once; its outputs are created sharded)."""

  @abc.abstractmethod
  def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One update on a global batch; metrics are scalars averaged over the batch, `loss` among them."""

  def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
    """Sums over one eval batch weighted by `batch['mask']`, with the number of examples as `count`."""
    raise NotImplementedError(f'{type(self).__name__} has eval data but no eval_step')

  @abc.abstractmethod
  def train_data(self) -> Any:
    """An iterator of this process's slices of global batches with get_state()/set_state()."""

  def eval_data(self) -> Iterable[Batch] | None:
    """A fresh pass over the eval set (this process's slices, with `mask`), or None for no eval."""
    return None

  def after_eval(self, state: TrainState, step: int, workdir: str) -> dict[str, float]:
    """Extra evaluation on the host after each eval (sample grids, zero-shot, ...); returns metrics."""
    del state, step, workdir
    return {}



class InMemoryExperiment(Experiment):
  """An experiment whose splits are random-access sources it builds itself (synthetic tasks,
  corpora, generated sets): `__init__` sets `self.train_source` and `self.eval_source` (or leaves
  the latter None). Shuffling, per-process slices, batching and the iterator position saved with
  each checkpoint are then the shared pipeline's.
  """
  train_source: Any
  eval_source: Any = None

  def train_data(self) -> Any:
    return pipeline.train_batches(self.train_source, global_batch_size=self.config.train.batch_size,
                                  seed=self.config.seed)

  def eval_data(self) -> Iterable[Batch] | None:
    if self.eval_source is None:
      return None
    return pipeline.eval_batches(self.eval_source, global_batch_size=self.config.train.batch_size)


def train_and_evaluate(experiment: Experiment, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) `experiment` in `workdir`; returns the results also written to results.json."""
  config, mesh = experiment.config, experiment.mesh
  tc = config.train
  start_time = time.perf_counter()
  replicated = devices.replicated(mesh)
  devices.local_batch_size(tc.batch_size, mesh)  # Fails early, with a clear message, on a bad size.

  rng = jax.random.PRNGKey(config.seed)
  abstract_state = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
      jax.eval_shape(experiment.init, rng))
  checkpointer = checkpoint_lib.Checkpointer(workdir, max_to_keep=tc.max_to_keep)
  data = experiment.train_data()
  if checkpointer.latest_step() is not None:
    state, data_state = checkpointer.restore(abstract_state)
    data.set_state(data_state)
    logging.info('resumed from %s/%d', checkpointer.directory, checkpointer.latest_step())
  else:
    state = jax.jit(experiment.init, out_shardings=replicated)(rng)
  start_step = int(_fetch(state.step))

  step_fn = _compile_train_step(experiment, abstract_state, mesh)
  eval_fn = _compile_eval_step(experiment)
  metric_shapes = accumulator = None
  writer = metrics_lib.MetricWriter(workdir)
  progress = metrics_lib.Progress(start_step, tc.steps)
  preemption = _PreemptionWatch()
  train_metrics: dict[str, float] = {}
  eval_metrics: dict[str, float] = {}
  step = start_step
  one_step_in_flight = devices.runs_collectives_on_host_threads(mesh)
  try:
    while step < tc.steps:
      batch = devices.global_batch(next(data), mesh)
      if one_step_in_flight:
        _wait_for_previous_step(state.step)
      if metric_shapes is None:
        metric_shapes = jax.eval_shape(experiment.train_step, state, batch)[1]
        accumulator = _zero_accumulator(metric_shapes, replicated)
      state, accumulator = step_fn(state, batch, accumulator)
      step += 1
      is_last = step == tc.steps
      preempted = preemption.requested(step)
      if step % tc.log_every == 0 or is_last or preempted:
        train_metrics = _summarise(accumulator, step)
        accumulator = _zero_accumulator(metric_shapes, replicated)
        rate, eta = progress.update(step)
        metrics_lib.log_line(step, tc.steps, train_metrics, rate, eta)
        writer.scalars(step, {**train_metrics, 'steps_per_second': rate}, prefix='train/')
      if step % tc.checkpoint_every == 0 or is_last or preempted:
        if step % tc.log_every:  # Not summarised above: check the losses since the last log line.
          _check_finite(_fetch(accumulator['first_nonfinite']))
        checkpointer.save(step, state, data.get_state())
      if preempted:
        checkpointer.wait()
        logging.warning('preempted at step %d: checkpoint saved in %s; relaunch the same command to '
                        'resume', step, checkpointer.directory)
        return {'preempted_at_step': step}
      if (tc.eval_every and step % tc.eval_every == 0) or is_last:
        eval_metrics = _evaluate(experiment, eval_fn, state, step, workdir)
        writer.scalars(step, eval_metrics, prefix='eval/')
        progress.restart(step)
    if step == start_step:  # Relaunched after the run had finished: report its final evaluation.
      eval_metrics = _evaluate(experiment, eval_fn, state, step, workdir)
  finally:
    checkpointer.wait()
    checkpointer.close()
    writer.close()
    preemption.restore()

  results = {
      'step': step,
      'train': train_metrics,
      'eval': eval_metrics,
      'config': config.to_dict(),
      'wall_time_s': time.perf_counter() - start_time,
      'train_step_compilations': step_fn._cache_size(),
  }
  metrics_lib.write_results(workdir, results)
  return results


def _evaluate(experiment: Experiment, eval_fn, state: TrainState, step: int,
              workdir: str) -> dict[str, float]:
  """Sums `eval_step` over the eval set on the device, then divides by the example count."""
  batches = experiment.eval_data()
  one_step_in_flight = devices.runs_collectives_on_host_threads(experiment.mesh)
  metrics: dict[str, float] = {}
  if batches is not None:
    sums = None
    for local_batch in batches:
      batch = devices.global_batch(local_batch, experiment.mesh)
      if sums is None:
        sums = jax.tree.map(jnp.zeros_like, jax.eval_shape(experiment.eval_step, state, batch))
      elif one_step_in_flight:
        _wait_for_previous_step(sums)
      sums = eval_fn(state, batch, sums)
    sums = _fetch(sums)
    count = float(sums.pop('count'))
    metrics = {k: float(v) / count for k, v in sums.items()}
  metrics.update(experiment.after_eval(state, step, workdir))
  if metrics:
    logging.info('eval at step %d | %s', step, metrics_lib.format_metrics(metrics))
  return metrics


def _compile_train_step(experiment: Experiment, abstract_state: Any, mesh: jax.sharding.Mesh):
  """jit of (state, batch, accumulator) -> (state, accumulator), with the metric bookkeeping fused."""

  def step(state: TrainState, batch: Batch, accumulator: dict[str, Any]):
    new_state, metrics = experiment.train_step(state, batch)
    nonfinite = jnp.logical_not(jnp.isfinite(metrics['loss']))
    first = accumulator['first_nonfinite']
    return new_state, {
        'sums': jax.tree.map(jnp.add, accumulator['sums'], metrics),
        'count': accumulator['count'] + 1,
        'first_nonfinite': jnp.where((first < 0) & nonfinite, new_state.step, first),
    }

  state_sharding = jax.tree.map(lambda s: s.sharding, abstract_state)
  replicated = devices.replicated(mesh)
  return jax.jit(step, in_shardings=(state_sharding, devices.data_sharded(mesh), replicated),
                 out_shardings=(state_sharding, replicated), donate_argnums=(0, 2),
                 compiler_options=devices.compiler_options())


def _compile_eval_step(experiment: Experiment):
  """jit of (state, batch, sums) -> sums + eval_step(state, batch)."""
  return jax.jit(
      lambda state, batch, sums: jax.tree.map(jnp.add, sums, experiment.eval_step(state, batch)),
      donate_argnums=(2,), compiler_options=devices.compiler_options())


def _zero_accumulator(metric_shapes: Any, replicated) -> dict[str, Any]:
  return jax.device_put({
      'sums': jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), metric_shapes),
      'count': np.zeros((), np.int32),
      'first_nonfinite': np.full((), -1, np.int32),
  }, replicated)


def _fetch(tree: Any) -> Any:
  """Every wait for the device in the loop goes through here: at start-up, logging, checkpoints, eval."""
  return jax.device_get(tree)


def _wait_for_previous_step(outputs: Any) -> None:
  """Blocks until the step that produced `outputs` has finished (no transfer to the host).

  Called on multi-device CPU meshes only, after the next batch is assembled so input work still
  overlaps the step: queued steps there can deadlock XLA CPU's all-reduce rendezvous under load
  (`devices.runs_collectives_on_host_threads`). GPUs and TPUs keep dispatching ahead.
  """
  jax.block_until_ready(outputs)


def _summarise(accumulator: dict[str, Any], step: int) -> dict[str, float]:
  host = _fetch(accumulator)
  _check_finite(host['first_nonfinite'])
  count = max(int(host['count']), 1)
  return {k: float(v) / count for k, v in host['sums'].items()}


def _check_finite(first_nonfinite: Any) -> None:
  if int(first_nonfinite) >= 0:
    raise NonFiniteLossError(
        f'the training loss became NaN or Inf at step {int(first_nonfinite)}; stopping. The last '
        'checkpoint saved before it is kept; lower the learning rate or check the inputs.')


class _PreemptionWatch:
  """Notices SIGTERM (single process) or the coordination service's preemption notice (multi-host)."""

  def __init__(self):
    self._signalled = False
    self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._signalled = True

  def requested(self, step: int) -> bool:
    if jax.process_count() > 1:
      # Every process must agree on the step at which to stop, or the collectives would hang.
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)
