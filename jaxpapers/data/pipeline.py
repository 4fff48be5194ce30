"""The input pipeline: any TFDS dataset (array_record format) -> sharded, shuffled, augmented batches.

Built on grain's random-access `MapDataset`, which needs no TensorFlow and makes every batch a pure
function of (seed, step). The training stream is

    source -> preprocess -> + rows -> shuffle(seed, reshuffled every epoch) -> repeat
           -> augment(per-example key) -> every process_count-th example from process_index
           -> batch(global / process_count)

where `rows` (optional) are per-example arrays computed offline, joined to each example by its
position in the split (row i to example i), e.g. ViLD's precomputed proposals and their teacher
embeddings: a host-side lookup, so the step never gathers from a large table on the device.

Each global batch is therefore the same set of examples whatever the number of processes, and the
iterator's position (`get_state()`) is saved in every checkpoint so a resumed run sees exactly the
batches an uninterrupted one would have.

Datasets must be prepared in the array_record format (`tfds build <name> --file_format=array_record`);
the offline datasets of this package (`OFFLINE_BUILDERS`) are built on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Iterator, Mapping

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from jaxpapers.data import (digits, font_glyphs, moving_shapes, scenes, shapes_captions,
                            shapes_domains, style_images)
from jaxpapers.errors import ConfigError, DatasetNotFoundError

Example = dict[str, Any]
# Dataset name -> builder class for datasets the project builds itself, without a network.
OFFLINE_BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    'sklearn_digits': digits.SklearnDigits,
    **shapes_captions.BUILDERS,
    **scenes.BUILDERS,
    **moving_shapes.BUILDERS,
    **font_glyphs.BUILDERS,
    **shapes_domains.BUILDERS,
}


def data_dir(override: str | None = None) -> str:
  return override or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def load_source(name: str, split: str, directory: str | None = None) -> Any:
  """A random-access source (len, __getitem__) over one split of a prepared TFDS dataset."""
  directory = data_dir(directory)
  if name in OFFLINE_BUILDERS:
    builder = OFFLINE_BUILDERS[name](data_dir=directory, file_format='array_record')
    if not builder.is_prepared():
      builder.download_and_prepare()
  else:
    try:
      builder = tfds.builder(name, data_dir=directory)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DatasetNotFoundError(f'unknown dataset {name!r}: {str(e).splitlines()[0]}') from None
  try:
    return builder.as_data_source(split=split)
  except Exception as e:  # Unprepared, wrong format or wrong split: say which, and what to do.
    build = f'tfds build {name} --file_format=array_record --data_dir={directory}'
    if not builder.is_prepared():
      raise DatasetNotFoundError(
          f'dataset {name!r} is not prepared in {directory}. Prepare it with `{build}` on a machine '
          'with network access (or set TFDS_DATA_DIR / --config.data.data_dir to where it is, e.g. a '
          'bucket).') from None
    if isinstance(e, NotImplementedError):
      raise DatasetNotFoundError(f'dataset {name!r} in {directory} is not in the array_record format '
                                 f'this pipeline reads; rebuild it with `{build}`') from None
    if split.split('[')[0] not in builder.info.splits:
      raise ConfigError(f'dataset {name!r} has no split {split!r}; its splits: '
                        f'{", ".join(builder.info.splits)}') from None
    raise


def in_memory(source: Any, preprocess: Callable[[Example], Example] | None = None) -> list[Example]:
  """Decodes (and preprocesses) a whole split once; for small datasets, where decoding dominates."""
  return [preprocess(source[i]) if preprocess else dict(source[i]) for i in range(len(source))]



class ArrayRows:
  """Random access over equal-length arrays, one dict of their rows per example (a grain source)."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f'arrays of different lengths: {lengths}')
    self._arrays = arrays
    self._length = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {name: values[index] for name, values in self._arrays.items()}


def train_batches(source: Any, *, global_batch_size: int, seed: int,
                  preprocess: Callable[[Example], Example] | None = None,
                  augment: Callable[[Example, np.random.Generator], Example] | None = None,
                  rows: Mapping[str, np.ndarray] | None = None,
                  process_index: int | None = None, process_count: int | None = None,
                  num_threads: int = 4, prefetch: int = 8) -> grain.DatasetIterator:
  """An endless iterator of this process's slices of shuffled global batches (dicts of NumPy arrays).

  `preprocess(example)` is deterministic (decode, normalise); `rows` {name: [len(source), ...]}
  adds row i of each array to the preprocessed example i; `augment(example, rng)` draws from an
  np.random.Generator seeded by (seed, position in the stream), so augmentations are reproducible too.
  """
  index, count = _process(process_index, process_count)
  if global_batch_size % count:
    raise ValueError(f'global batch size {global_batch_size} is not divisible by the {count} processes')
  ds = grain.MapDataset.source(source)
  if preprocess is not None:
    ds = ds.map(preprocess)
  if rows:
    ds = ds.map_with_index(functools.partial(_join_rows, _checked_rows(rows, len(source))))
  ds = ds.shuffle(seed=seed).repeat(None)
  if augment is not None:
    ds = ds.random_map(augment, seed=seed + 1)
  ds = ds[index::count].batch(global_batch_size // count, drop_remainder=True)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)))


def _checked_rows(rows: Mapping[str, np.ndarray], length: int) -> Mapping[str, np.ndarray]:
  lengths = {name: len(values) for name, values in rows.items()}
  if any(n != length for n in lengths.values()):
    raise ValueError(f'per-example rows of lengths {lengths} for a source of {length} examples')
  return rows


def _join_rows(rows: Mapping[str, np.ndarray], index: int, example: Example) -> Example:
  # grain's index grows past the source's length under `repeat` (its source reads it modulo).
  return {**example, **{name: values[index % len(values)] for name, values in rows.items()}}


def eval_batches(source: Any, *, global_batch_size: int,
                 preprocess: Callable[[Example], Example] | None = None,
                 process_index: int | None = None, process_count: int | None = None
                 ) -> Iterator[Example]:
  """One pass over `source` in order, in this process's slices of global batches.

  The last batch is padded to the full size with copies of the first example; every batch carries
  `mask` (1.0 for real examples, 0.0 for padding), which evaluation sums must weight by.
  """
  index, count = _process(process_index, process_count)
  n = len(source)
  padded = -(-n // global_batch_size) * global_batch_size

  def example(i: int) -> Example:
    ex = dict(source[i if i < n else 0])
    if preprocess is not None:
      ex = preprocess(ex)
    ex['mask'] = np.float32(i < n)
    return ex

  ds = grain.MapDataset.range(padded).map(example)[index::count]
  yield from ds.batch(global_batch_size // count, drop_remainder=True)


def _process(index: int | None, count: int | None) -> tuple[int, int]:
  return (jax.process_index() if index is None else index,
          jax.process_count() if count is None else count)


def image_classification_preprocess(ex: Mapping[str, Any]) -> Example:
  """uint8 images -> float32 in [0, 1]; integer labels as int32; other features dropped."""
  return {'image': np.asarray(ex['image'], np.float32) / 255.0, 'label': np.int32(ex['label'])}


def image_generation_preprocess(ex: Mapping[str, Any]) -> Example:
  """uint8 images -> float32 in [-1, 1], the range generative models work in; labels kept."""
  out = {'image': np.asarray(ex['image'], np.float32) / 127.5 - 1.0}
  if 'label' in ex:
    out['label'] = np.int32(ex['label'])
  return out


def _relabelled(preprocess: Callable[[Mapping[str, Any]], Example], feature: str,
                ex: Mapping[str, Any]) -> Example:
  return preprocess({**ex, 'label': ex[feature]})


def segmentation_preprocess(ex: Mapping[str, Any]) -> Example:
  """uint8 images -> float32 in [0, 1]; the per-pixel class map (0 background) as int32."""
  return {'image': np.asarray(ex['image'], np.float32) / 255.0,
          'segmentation': np.asarray(ex['segmentation'], np.int32)}


def detection_preprocess(ex: Mapping[str, Any]) -> Example:
  """uint8 images -> float32 in [0, 1]; boxes (x0, y0, x1, y1 in pixels) and class labels (-1 for
  padding) of a fixed number of object slots."""
  return {'image': np.asarray(ex['image'], np.float32) / 255.0,
          'boxes': np.asarray(ex['boxes'], np.float32), 'labels': np.asarray(ex['labels'], np.int32)}


def instance_detection_preprocess(ex: Mapping[str, Any]) -> Example:
  """`detection_preprocess` plus the instance map (uint8 [H, W]: 0 background, 1 + object slot),
  from which two-stage detectors take each object's mask (Mask R-CNN)."""
  return {**detection_preprocess(ex), 'instances': np.asarray(ex['instances'], np.uint8)}


def base_detection_preprocess(ex: Mapping[str, Any]) -> Example:
  """`detection_preprocess` of the scenes' base classes only (`scenes.base_only`: the held-out
  classes' annotations removed), the training data of open-vocabulary detection (ViLD)."""
  return detection_preprocess(scenes.base_only(ex))


def label_to_image_preprocess(ex: Mapping[str, Any]) -> Example:
  """Paired translation from semantic maps (pix2pix, SPADE on the scenes set): the per-pixel class
  map as int32 (the model one-hot encodes it) and the target image in [-1, 1]."""
  return {'image': np.asarray(ex['image'], np.float32) / 127.5 - 1.0,
          'segmentation': np.asarray(ex['segmentation'], np.int32)}


def unpaired_preprocess(ex: Mapping[str, Any]) -> Example:
  """Unpaired translation (CycleGAN on shapes_domains): both domains' images in [-1, 1]."""
  return {f'image_{d}': np.asarray(ex[f'image_{d}'], np.float32) / 127.5 - 1.0 for d in 'ab'}


# What `config.data.preprocess` can name.
PREPROCESSORS: dict[str, Callable[[Mapping[str, Any]], Example]] = {
    'image_classification': image_classification_preprocess,
    'image_generation': image_generation_preprocess,
    'segmentation': segmentation_preprocess,
    'super_resolution_x4': style_images.super_resolution_preprocess,
    'detection': detection_preprocess,
    'instance_detection': instance_detection_preprocess,
    'base_detection': base_detection_preprocess,
    'label_to_image': label_to_image_preprocess,
    'unpaired': unpaired_preprocess,
}


@dataclasses.dataclass(frozen=True)
class Splits:
  """A run's training and evaluation sources and how each example is prepared.

  `Experiment.train_data` / `eval_data` read this by default (`experiment.data`), so an experiment
  only says where its examples come from: `from_config` for a TFDS dataset, or `Splits(train=...,
  eval=...)` over sources it generates (synthetic tasks, corpora: any object with len and
  __getitem__ returning dicts of arrays).
  """
  train: Any
  eval: Any = None
  preprocess: Callable[[Example], Example] | None = None
  info: Any = None  # tfds.core.DatasetInfo for TFDS datasets
  train_rows: Mapping[str, np.ndarray] | None = None  # `train_batches`' rows, training only

  def example(self) -> Example:
    """The first training example as the model sees it (after preprocessing)."""
    example = self.train[0]
    example = self.preprocess(example) if self.preprocess else dict(example)
    return _join_rows(self.train_rows or {}, 0, example)

  def train_batches(self, global_batch_size: int, seed: int) -> grain.DatasetIterator:
    return train_batches(self.train, global_batch_size=global_batch_size, seed=seed,
                         preprocess=self.preprocess, rows=self.train_rows)

  def eval_batches(self, global_batch_size: int) -> Iterator[Example] | None:
    if self.eval is None:
      return None
    return eval_batches(self.eval, global_batch_size=global_batch_size, preprocess=self.preprocess)


def from_config(config: Mapping[str, Any]) -> Splits:
  """The splits a `config.data` names: name, data_dir ('' for TFDS_DATA_DIR), train_split,
  eval_split, preprocess (a key of `PREPROCESSORS`), in_memory (decode every example once: for
  small datasets, where decoding dominates), label_feature (optional: the feature read as `label`,
  for datasets with several class features). Other keys (e.g. `augment`) belong to the experiment.
  """
  if config['preprocess'] not in PREPROCESSORS:
    raise ConfigError(f'config.data.preprocess={config["preprocess"]!r}; valid: '
                      f'{", ".join(PREPROCESSORS)}')
  preprocess = PREPROCESSORS[config['preprocess']]
  label_feature = config.get('label_feature', 'label')
  if label_feature != 'label':  # e.g. the `shape` of shapes_captions as a classifier's label
    preprocess = functools.partial(_relabelled, preprocess, label_feature)
  directory = config.get('data_dir') or None
  train, evaluation = (load_source(config['name'], split, directory)
                       for split in (config['train_split'], config['eval_split']))
  info = train.dataset_info
  if config.get('in_memory'):
    train, evaluation = in_memory(train, preprocess), in_memory(evaluation, preprocess)
    preprocess = None
  return Splits(train=train, eval=evaluation, preprocess=preprocess, info=info)
