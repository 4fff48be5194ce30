"""The evaluator interface: library code that turns a train state into metrics (and images).

An experiment lists its evaluators in its config, as big_vision's `config.evals`:

    config.evals = dict(
        samples=dict(type='sample_grid', fn='sample', num_images=100, seed=0),
        quality=dict(type='sample_quality', fn='sample', num_samples=1000,
                     classifier_workdir='runs/digits_classifier', dataset='sklearn_digits'))

Each entry is built once per run, `EVALUATORS[type](config, fns, mesh)`, where `fns` are the
experiment's named functions of the state (`Experiment.evaluation_fns()`: 'sample', 'logits',
'image_features', ...; the entry's `fn` key says which one it uses). The loop calls every evaluator
after each evaluation, `evaluator(state, step, writer)`, and logs what it returns as
`eval/<entry name>_<metric>`. Evaluators never import an experiment: what they need of one comes
through `fns`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import jax
import numpy as np

from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.train import devices
from jaxpapers.train.metrics import MetricWriter


class Evaluator(abc.ABC):
  """Built from its config entry and the experiment's functions; called after each evaluation."""

  # Config keys every instance accepts beyond `type` and `fn`, with their defaults.
  defaults: Mapping[str, Any] = {}

  def __init__(self, config: Mapping[str, Any], fns: Mapping[str, Callable[..., Any]],
               mesh: jax.sharding.Mesh):
    config = dict(config)
    kind = config.pop('type')
    unknown = sorted(set(config) - set(self.defaults) - {'fn'})
    if unknown:
      raise ConfigError(f'evaluator {kind!r} has no option {", ".join(map(repr, unknown))}; '
                        f'its options: {", ".join(["fn", *self.defaults])}')
    self.config = {**self.defaults, **config}
    self.kind = kind
    self.mesh = mesh
    if 'fn' in config:
      self.fn = self.experiment_fn(fns, 'fn')

  def experiment_fn(self, fns: Mapping[str, Callable[..., Any]], option: str) -> Callable[..., Any]:
    """The experiment's function that config option `option` names."""
    name = self.config[option]
    if name not in fns:
      raise ConfigError(f'evaluator {self.kind!r} uses {option}={name!r}, which the experiment '
                        f'does not provide; it provides: {", ".join(fns) or "none"}')
    return fns[name]

  @abc.abstractmethod
  def __call__(self, state: Any, step: int, writer: MetricWriter) -> dict[str, float]:
    """Metrics of `state` at `step`; images go to `writer` (and files under `writer.workdir`)."""


class FrozenFeatures(Evaluator):
  """Base of the evaluators that fit or search on frozen features (linear probe, k-NN).

  Loads `train_split` (its first `train_size` examples if > 0) and every split of `eval_splits`,
  {name: split}, with their `targets` label features; `features(state)` maps `fn` over their images
  (once only, if `cache_features`: for an `fn` that ignores the state, e.g. an untrained network).
  """
  defaults = {'dataset': '', 'data_dir': '', 'train_split': 'train', 'train_size': 0,
              'eval_splits': {'test': 'test'}, 'targets': ('label',), 'batch_size': 256,
              'cache_features': False}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    keys = ('image', *c['targets'])
    self.sets = {'train': load_split(c['dataset'], c['train_split'], c['data_dir'], keys,
                                     c['train_size'])}
    for name, split in dict(c['eval_splits']).items():
      self.sets[name] = load_split(c['dataset'], split, c['data_dir'], keys)
    self.num_classes = {t: num_classes(c['dataset'], c['data_dir'], t) for t in c['targets']}
    self._features = None

  def features(self, state: Any) -> dict[str, np.ndarray]:
    """Features of every loaded split, by split name ('train' and the eval names)."""
    c = self.config
    if self._features is None or not c['cache_features']:
      self._features = {name: map_batches(self.fn, state, data['image'], c['batch_size'], self.mesh)
                        for name, data in self.sets.items()}
    return self._features


def map_batches(fn: Callable[[Any, jax.Array], Any], state: Any, inputs: np.ndarray,
                batch_size: int, mesh: jax.sharding.Mesh) -> Any:
  """`fn(state, batch)` over `inputs` in padded batches sharded over 'data'; rows back in order
  (every array of the output when `fn` returns a pytree of arrays).

  Every batch has the same shape (the last is padded with copies of the first row), so `fn` is
  compiled once. `batch_size` is rounded up to a multiple of the mesh size.
  """
  size = -(-batch_size // mesh.size) * mesh.size
  sharding = devices.data_sharded(mesh)
  outputs = []
  for start in range(0, len(inputs), size):
    chunk = inputs[start:start + size]
    padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), axis=0)])
    batch = jax.make_array_from_callback(padded.shape, sharding,
                                         lambda index, rows=padded: rows[index])
    outputs.append(jax.tree.map(np.asarray, jax.device_get(fn(state, batch))))
  # Drop the padding rows of the last batch.
  outputs[-1] = jax.tree.map(lambda x: x[:len(inputs) - (len(outputs) - 1) * size], outputs[-1])
  return jax.tree.map(lambda *rows: np.concatenate(rows), *outputs)


def load_split(dataset: str, split: str, data_dir: str, keys: tuple[str, ...],
               limit: int = 0) -> dict[str, np.ndarray]:
  """Features `keys` of a whole TFDS split (its first `limit` examples if > 0), stacked."""
  source = pipeline.load_source(dataset, split, data_dir or None)
  count = min(limit, len(source)) if limit else len(source)
  rows = [source[i] for i in range(count)]
  return {key: np.stack([np.asarray(row[key]) for row in rows]) for key in keys}


def num_classes(dataset: str, data_dir: str, feature: str) -> int:
  """The number of classes of a ClassLabel feature of a TFDS dataset."""
  source = pipeline.load_source(dataset, 'train', data_dir or None)
  return source.dataset_info.features[feature].num_classes
