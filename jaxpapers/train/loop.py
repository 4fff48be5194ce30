"""The one training loop every experiment runs: sharded jit step, eval, checkpoints, metrics, guards.

An experiment subclasses `Experiment` and supplies only what is specific to its paper: how to build
the state, one train step, one eval step and its data. Everything else lives here:

* the train step is compiled once with `jax.jit`: state replicated, the batch sharded over the
  `data` axis, the state and the metric accumulator donated;
* metrics are summed on the device inside the compiled step, so the host waits for the device only
  when it logs, checkpoints or evaluates;
* the first non-finite loss stops the run with a message naming the step, before anything computed
  from it is checkpointed;
* SIGTERM (a TPU VM preemption) saves a checkpoint and returns cleanly, with `status: preempted`
  in the results; relaunching the same command resumes from the newest checkpoint that restores,
  data position included.
"""

from __future__ import annotations

import abc
import functools
import signal
import time
from typing import Any, Callable, Hashable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jaxpapers import evaluators as evaluators_lib
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError, NonFiniteLossError
from jaxpapers.train import checkpoint as checkpoint_lib
from jaxpapers.train import config_checks
from jaxpapers.train import devices
from jaxpapers.train import init_from
from jaxpapers.train import metrics as metrics_lib

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


class Experiment(abc.ABC):
  """What a paper's experiment supplies to the loop. Every method but the data ones is pure.

  The loop reads `config.seed`, `config.train` (steps, batch_size, log_every, eval_every,
  checkpoint_every, max_to_keep, and cpu_kernels: see `devices.CPU_KERNELS`),
  `config.evals` (the evaluators run after each evaluation, `jaxpapers.evaluators`) and, where
  present, `config.init_from` and `config.init_from_exclude` (see `init_from`); the rest of the
  config belongs to the experiment. Its data is `self.data`, a `pipeline.Splits`
  (`pipeline.from_config(config.data)` for a TFDS dataset), which the default `train_data` /
  `eval_data` batch; an experiment overrides them only to feed the loop something else.
  """
  data: pipeline.Splits | None = None

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config = config
    self.mesh = mesh

  @abc.abstractmethod
  def init(self, rng: jax.Array) -> Any:
    """The initial state (a TrainState or GameState) from a PRNG key (traced once; its outputs are
    created sharded)."""

  @abc.abstractmethod
  def train_step(self, state: Any, batch: Batch, **options: Hashable) -> tuple[Any, Metrics]:
    """One update on a global batch; metrics are scalars averaged over the batch, `loss` among them.
    `options` are `step_options(step)`; every step returns the same metrics."""

  def step_options(self, step: int) -> dict[str, Hashable]:
    """Static keyword arguments of `train_step` for the step about to run (none by default).

    Each distinct set compiles its own step, so work done every few steps (StyleGAN2's lazy R1)
    is chosen here on the host rather than by `lax.cond` in the step: XLA:CPU leaves gradient
    convolutions inside a conditional's branches (as inside a loop body) to its generic loop
    emitter; a two-layer convolution's gradient took 50 s there against 0.65 s at the top level
    (WORKSPACE.md, issue 19).
    """
    del step
    return {}

  def eval_step(self, state: Any, batch: Batch) -> Metrics:
    """Sums over one eval batch weighted by `batch['mask']`, with the number of examples as `count`."""
    raise NotImplementedError(f'{type(self).__name__} has eval data but no eval_step')

  def evaluation_fns(self) -> dict[str, Callable[..., Any]]:
    """Named functions of the state that `config.evals` evaluators use (see jaxpapers.evaluators):
    e.g. 'sample': (state, key, num) -> images in [0, 1]; 'image_features': (state, images) -> [N, D].
    """
    return {}

  def train_data(self) -> Any:
    """An iterator of this process's slices of global batches with get_state()/set_state()."""
    if self.data is None:
      raise NotImplementedError(f'{type(self).__name__} sets no `data` and overrides no train_data')
    return self.data.train_batches(self.config.train.batch_size, self.config.seed)

  def eval_data(self) -> Iterable[Batch] | None:
    """A fresh pass over the eval set (this process's slices, with `mask`), or None for no eval."""
    return None if self.data is None else self.data.eval_batches(self.config.train.batch_size)


def train_and_evaluate(experiment: Experiment, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) `experiment` in `workdir`; returns the results also written to results.json."""
  config, mesh = experiment.config, experiment.mesh
  config_checks.check_values(config)
  tc = config.train
  start_time = time.perf_counter()
  replicated = devices.replicated(mesh)
  devices.local_batch_size(tc.batch_size, mesh)  # Fails early, with a clear message, on a bad size.

  rng = jax.random.PRNGKey(config.seed)
  try:
    abstract_state = jax.eval_shape(experiment.init, rng)
  except (ValueError, TypeError) as e:  # e.g. a model override that its layers reject
    reason = (str(e).strip().splitlines() or [''])[0]
    raise ConfigError(f'cannot build the initial state ({type(e).__name__}: {reason})') from e
  abstract_state = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract_state)
  checkpointer = checkpoint_lib.Checkpointer(workdir, max_to_keep=tc.max_to_keep)
  data = experiment.train_data()
  restored = checkpointer.restore_latest(abstract_state)
  if restored is not None:
    restored_step, state, data_state = restored
    data.set_state(data_state)
    logging.info('resumed from %s/%d', checkpointer.directory, restored_step)
  else:
    state = jax.jit(experiment.init, out_shardings=replicated)(rng)
    if config.get('init_from'):
      state = init_from.load_into(state, config.init_from, config.get('init_from_exclude', ''))
  start_step = int(_fetch(state.step))

  options = devices.run_compiler_options(tc)
  step_fn = _compile_train_step(experiment, abstract_state, mesh, options)
  eval_fn = _compile_eval_step(experiment, options)
  evaluators = evaluators_lib.build(config.get('evals'), experiment.evaluation_fns(), mesh)
  metric_shapes = accumulator = None
  writer = metrics_lib.MetricWriter(workdir)
  progress = metrics_lib.Progress(start_step, tc.steps)
  preemption = _PreemptionWatch()
  train_metrics: dict[str, float] = {}
  eval_metrics: dict[str, float] = {}
  step = start_step
  try:
    while step < tc.steps:
      batch = devices.global_batch(next(data), mesh)
      options = experiment.step_options(step)
      if metric_shapes is None:
        metric_shapes = jax.eval_shape(functools.partial(experiment.train_step, **options),
                                       state, batch)[1]
        accumulator = _zero_accumulator(metric_shapes, replicated)
      state, accumulator = step_fn(state, batch, accumulator, tuple(sorted(options.items())))
      step += 1
      is_last = step == tc.steps
      preempted = preemption.requested(step)
      summarised = step % tc.log_every == 0 or is_last or preempted
      if summarised:
        train_metrics = _summarise(accumulator, step)
        accumulator = _zero_accumulator(metric_shapes, replicated)
        rate, eta = progress.update(step)
        metrics_lib.log_line(step, tc.steps, train_metrics, rate, eta)
        writer.scalars(step, {**train_metrics, 'steps_per_second': rate}, prefix='train/')
      if step % tc.checkpoint_every == 0 or is_last or preempted:
        if not summarised:  # Check the losses since the last log line before saving them.
          _check_finite(_fetch(accumulator['first_nonfinite']))
        checkpointer.save(step, state, data.get_state())
      if preempted:
        checkpointer.wait()
        logging.warning('preempted at step %d: checkpoint saved in %s; relaunch the same command to '
                        'resume', step, checkpointer.directory)
        break
      if (tc.eval_every and step % tc.eval_every == 0) or is_last:
        eval_metrics = _evaluate(experiment, eval_fn, evaluators, state, step, writer)
        writer.scalars(step, eval_metrics, prefix='eval/')
        progress.restart(step)
    if step == start_step:  # Relaunched after the run had finished: report its final evaluation.
      eval_metrics = _evaluate(experiment, eval_fn, evaluators, state, step, writer)
  finally:
    writer.close()
    preemption.restore()
    checkpointer.close()  # Last: it raises if the final save failed.

  results = {
      'status': 'finished' if step == tc.steps else 'preempted',  # The loop ends early only then.
      'step': step,
      'train': train_metrics,
      'eval': eval_metrics,
      'config': config.to_dict(),
      'wall_time_s': time.perf_counter() - start_time,
      'train_step_compilations': step_fn._cache_size(),
      'eval_step_compilations': eval_fn._cache_size(),
  }
  metrics_lib.write_results(workdir, results)
  return results


def _evaluate(experiment: Experiment, eval_fn, evaluators, state: Any, step: int,
              writer: metrics_lib.MetricWriter) -> dict[str, float]:
  """Sums `eval_step` over the eval set on the device and divides by the example count; then runs
  the config's evaluators, whose metrics are named `<evaluator>_<metric>`."""
  batches = experiment.eval_data()
  metrics: dict[str, float] = {}
  if batches is not None:
    sums = None
    for local_batch in batches:
      batch = devices.global_batch(local_batch, experiment.mesh)
      if sums is None:
        # Replicated, as the step returns them: else the second batch compiles the step again.
        sums = jax.device_put(
            jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                         jax.eval_shape(experiment.eval_step, state, batch)),
            devices.replicated(experiment.mesh))
      sums = eval_fn(state, batch, sums)
    sums = _fetch(sums)
    count = float(sums.pop('count'))
    metrics = {k: float(v) / count for k, v in sums.items()}
  for name, evaluator in evaluators.items():
    metrics.update({f'{name}_{k}': v for k, v in evaluator(state, step, writer).items()})
  if metrics:
    logging.info('eval at step %d | %s', step, metrics_lib.format_metrics(metrics))
  return metrics


def _compile_train_step(experiment: Experiment, abstract_state: Any, mesh: jax.sharding.Mesh,
                        compiler_options: dict | None):
  """jit of (state, batch, accumulator, options) -> (state, accumulator), with the metric
  bookkeeping fused; `options` (static) are the sorted items of `Experiment.step_options`."""

  def step(state: Any, batch: Batch, accumulator: dict[str, Any], options: tuple):
    new_state, metrics = experiment.train_step(state, batch, **dict(options))
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
                 out_shardings=(state_sharding, replicated), static_argnums=3,
                 donate_argnums=(0, 2), compiler_options=compiler_options)


def _compile_eval_step(experiment: Experiment, compiler_options: dict | None):
  """jit of (state, batch, sums) -> sums + eval_step(state, batch)."""
  return jax.jit(
      lambda state, batch, sums: jax.tree.map(jnp.add, sums, experiment.eval_step(state, batch)),
      donate_argnums=(2,), compiler_options=compiler_options)


def _zero_accumulator(metric_shapes: Any, replicated) -> dict[str, Any]:
  return jax.device_put({
      'sums': jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), metric_shapes),
      'count': np.zeros((), np.int32),
      'first_nonfinite': np.full((), -1, np.int32),
  }, replicated)


def _fetch(tree: Any) -> Any:
  """Every wait for the device in the loop goes through here: at start-up, logging, checkpoints, eval."""
  return jax.device_get(tree)


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
