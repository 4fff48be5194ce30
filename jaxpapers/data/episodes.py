"""Class-structured batches for metric learning and few-shot episodes: N classes x M examples each.

One sampler serves the three metric-learning papers of `jaxpapers/metric/`:
  * Prototypical Networks (Snell et al. 2017, arXiv:1703.05175, section 2.2, Algorithm 1): an
    episode of N_c classes, each with N_S support and N_Q query examples (M = N_S + N_Q);
  * FaceNet (Schroff et al. 2015, arXiv:1503.03832, section 3.2): a mini-batch with a fixed number
    of exemplars per identity (about 40 faces there), so every anchor has positives, and the
    negatives come from the other identities of the batch;
  * the siamese network (Koch et al. 2015, section 4): same and different pairs are read off the
    batch (two examples per class give one same pair per class and, paired across classes, as many
    different pairs).

A batch is `{'image': [N * M, ...], 'label': [N * M], 'class_index': [N * M]}` in class-major order
(the M examples of the first class, then the second's, ...); `label` is the dataset's class and
`class_index` the class's position 0..N-1 in this batch. Batch i is a pure function of (seed, i):
the classes are drawn without replacement from all classes, and each class's examples without
replacement from its examples. The iterator has grain's get_state / set_state, so the loop's
checkpoints resume it exactly.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from jaxpapers.errors import ConfigError


class ClassBatches:
  """Random access to class-structured batches of (images, labels) held in memory."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, ways: int, per_class: int, seed: int):
    labels = np.asarray(labels)
    self.images, self.labels = images, labels
    self.classes = np.unique(labels)
    self.by_class = [np.flatnonzero(labels == c) for c in self.classes]
    if ways > len(self.classes):
      raise ConfigError(f'{ways} classes per batch, but the data has only {len(self.classes)}')
    fewest = min(len(members) for members in self.by_class)
    if per_class > fewest:
      raise ConfigError(f'{per_class} examples per class, but some class has only {fewest}')
    self.ways, self.per_class, self.seed = ways, per_class, seed

  def indices(self, index: int) -> np.ndarray:
    """Row indices of batch `index`, [ways, per_class]."""
    rng = np.random.default_rng([self.seed, index])
    chosen = rng.choice(len(self.classes), self.ways, replace=False)
    return np.stack([rng.choice(self.by_class[c], self.per_class, replace=False) for c in chosen])

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    rows = self.indices(index).reshape(-1)
    return {'image': self.images[rows], 'label': self.labels[rows].astype(np.int32),
            'class_index': np.repeat(np.arange(self.ways, dtype=np.int32), self.per_class)}


def class_batches(images: np.ndarray, labels: np.ndarray, *, ways: int, per_class: int, seed: int,
                  process_index: int = 0, process_count: int = 1) -> Any:
  """An endless iterator of this process's contiguous slices of `ClassBatches` (the loop assembles
  the processes' slices, in process order, into the global batch)."""
  source = ClassBatches(images, labels, ways, per_class, seed)
  size = ways * per_class
  if size % process_count:
    raise ConfigError(f'a batch of {ways} x {per_class} examples does not split over '
                      f'{process_count} processes')
  share = size // process_count
  lo = process_index * share

  def batch(i: int) -> dict[str, np.ndarray]:
    return {k: v[lo:lo + share] for k, v in source[int(i)].items()}

  # 2^40 batches: endless for any run, and still random access.
  return iter(grain.MapDataset.range(2 ** 40).map(batch).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)))
