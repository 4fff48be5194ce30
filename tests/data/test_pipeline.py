"""The TFDS/grain input pipeline: real dataset names on mock data, the digits builder, sharding, resume."""

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError, DatasetNotFoundError

SOURCE = [{'index': np.int32(i)} for i in range(50)]


def indices(batch):
  return batch['index'].tolist()


@pytest.mark.parametrize('name, shape', [('mnist', (28, 28, 1)), ('cifar10', (32, 32, 3))])
def test_real_tfds_names_on_mock_data(tmp_path, name, shape):
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    source = pipeline.load_source(name, 'train', str(tmp_path))
    batches = pipeline.train_batches(source, global_batch_size=8, seed=0,
                                     preprocess=pipeline.image_classification_preprocess)
    batch = next(batches)
  assert batch['image'].shape == (8, *shape) and batch['image'].dtype == np.float32
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['label'].shape == (8,) and batch['label'].dtype == np.int32
  assert np.all((0 <= batch['label']) & (batch['label'] < 10))


def test_digits_builder(digits_dir):
  train = pipeline.load_source('sklearn_digits', 'train', digits_dir)
  test = pipeline.load_source('sklearn_digits', 'test', digits_dir)
  assert (len(train), len(test)) == (1437, 360)
  images = np.stack([test[i]['image'] for i in range(len(test))])
  labels = np.array([test[i]['label'] for i in range(len(test))])
  assert images.shape == (360, 8, 8, 1) and images.dtype == np.uint8 and images.max() == 255
  assert set(labels.tolist()) == set(range(10))


def test_every_epoch_visits_each_example_once_in_a_new_order():
  batches = pipeline.train_batches(SOURCE, global_batch_size=10, seed=0)
  epochs = [sum((indices(next(batches)) for _ in range(5)), []) for _ in range(2)]
  assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(50))
  assert epochs[0] != epochs[1]


def test_rows_join_each_example_to_its_own_row_after_preprocessing():
  """Per-example arrays computed offline (ViLD's proposals): example i gets row i, in every
  shuffled batch; a preprocess that keeps only some features keeps the rows."""
  rows = {'row': np.arange(50) * 10, 'pair': np.stack([np.arange(50), -np.arange(50)], 1)}
  preprocess = lambda ex: {'index': ex['index']}
  splits = pipeline.Splits(train=[{**ex, 'dropped': 0} for ex in SOURCE], preprocess=preprocess,
                           train_rows=rows)
  assert set(splits.example()) == {'index', 'row', 'pair'}
  batches = splits.train_batches(10, seed=0)
  for _ in range(6):  # more than an epoch
    batch = next(batches)
    np.testing.assert_array_equal(batch['row'], batch['index'] * 10)
    np.testing.assert_array_equal(batch['pair'], np.stack([batch['index'], -batch['index']], 1))
  with pytest.raises(ValueError, match='lengths'):
    pipeline.train_batches(SOURCE, global_batch_size=10, seed=0, rows={'row': np.arange(49)})


def test_process_slices_make_up_the_single_process_batch():
  single = pipeline.train_batches(SOURCE, global_batch_size=8, seed=3)
  per_process = [pipeline.train_batches(SOURCE, global_batch_size=8, seed=3, process_index=p,
                                        process_count=2) for p in range(2)]
  for _ in range(10):
    union = indices(next(per_process[0])) + indices(next(per_process[1]))
    assert len(union) == 8 and sorted(union) == sorted(indices(next(single)))


def test_iterator_state_resumes_at_the_exact_batch():
  augment = lambda ex, rng: {**ex, 'noise': rng.normal(size=3)}
  make = lambda: pipeline.train_batches(SOURCE, global_batch_size=4, seed=1, augment=augment)
  reference = list(itertools.islice(make(), 7))
  interrupted = make()
  for _ in range(3):
    next(interrupted)
  resumed = make()
  resumed.set_state(interrupted.get_state())
  for expected in reference[3:]:
    got = next(resumed)
    np.testing.assert_array_equal(got['index'], expected['index'])
    np.testing.assert_array_equal(got['noise'], expected['noise'])


def test_eval_batches_cover_every_example_once_and_mask_the_padding():
  seen = []
  for p in range(2):
    for batch in pipeline.eval_batches(SOURCE, global_batch_size=16, process_index=p, process_count=2):
      assert batch['index'].shape == (8,)
      seen += [i for i, m in zip(indices(batch), batch['mask']) if m == 1.0]
  assert sorted(seen) == list(range(50))


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(DatasetNotFoundError, match='tfds build mnist --file_format=array_record'):
    pipeline.load_source('mnist', 'train', str(tmp_path))
  with pytest.raises(DatasetNotFoundError, match='unknown dataset'):
    pipeline.load_source('no_such_dataset', 'train', str(tmp_path))


def test_unknown_split_lists_the_splits(digits_dir):
  with pytest.raises(ConfigError, match='its splits: train, test|its splits: test, train'):
    pipeline.load_source('sklearn_digits', 'validation', digits_dir)
