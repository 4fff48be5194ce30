"""The associative retrieval task of Ba et al. 2016 (arXiv:1610.06258, section 4.1)."""

import re

import numpy as np
import pytest

from jaxpapers.data import associative_retrieval as ar

# chi-square critical values at p = 0.001 (the seeds are fixed, so these tests are deterministic).
CHI2_CRITICAL_001 = {3: 16.27, 9: 27.88, 25: 52.62}


def _chi_square(counts: np.ndarray) -> float:
  expected = counts.sum() / len(counts)
  return float(((counts - expected) ** 2 / expected).sum())


@pytest.fixture(scope='module')
def splits():
  return ar.make_splits(seed=0)


def test_vocabulary_and_round_trip():
  assert ar.VOCAB_SIZE == 37 and ar.NUM_CLASSES == 10
  tokens = ar.encode('c9k8j3f1??c')  # The paper's first example.
  np.testing.assert_array_equal(tokens, [2, 35, 10, 34, 9, 29, 5, 27, 36, 36, 2])
  assert ar.decode(tokens) == 'c9k8j3f1??c'


def test_paper_split_sizes_and_format(splits):
  assert {k: len(v['label']) for k, v in splits.items()} == {
      'train': 100_000, 'validation': 10_000, 'test': 20_000}
  for split in splits.values():
    assert split['tokens'].dtype == np.int32 and split['label'].dtype == np.int32
    assert split['tokens'].shape[1] == ar.sequence_length() == 11
  pattern = re.compile(r'([a-z][0-9]){4}\?\?[a-z]')
  assert all(pattern.fullmatch(ar.decode(t)) for t in splits['validation']['tokens'][:500])


@pytest.mark.parametrize('num_pairs', [1, 4, 9])
def test_keys_distinct_query_present_once_and_label_is_its_value(num_pairs):
  data = ar.generate(5_000, np.random.default_rng(num_pairs), num_pairs=num_pairs)
  tokens, labels = data['tokens'], data['label']
  assert tokens.shape == (5_000, 2 * num_pairs + 3)
  keys, values = tokens[:, 0:2 * num_pairs:2], tokens[:, 1:2 * num_pairs:2]
  assert keys.max() < ar.DIGIT_OFFSET  # Keys are letters ...
  assert ((values >= ar.DIGIT_OFFSET) & (values < ar.SEPARATOR_ID)).all()  # ... values digits.
  assert (tokens[:, 2 * num_pairs:-1] == ar.SEPARATOR_ID).all()
  assert all(len(set(row)) == num_pairs for row in keys)
  hits = keys == tokens[:, -1:]
  np.testing.assert_array_equal(hits.sum(1), 1)
  np.testing.assert_array_equal(labels, values[hits] - ar.DIGIT_OFFSET)


def test_targets_query_positions_and_keys_are_uniform(splits):
  train = splits['train']
  labels = np.bincount(train['label'], minlength=10)
  assert _chi_square(labels) < CHI2_CRITICAL_001[9]
  position = np.argmax(train['tokens'][:, 0:8:2] == train['tokens'][:, -1:], axis=1)
  assert _chi_square(np.bincount(position, minlength=4)) < CHI2_CRITICAL_001[3]
  letters = np.bincount(train['tokens'][:, 0:8:2].ravel(), minlength=26)
  assert _chi_square(letters) < CHI2_CRITICAL_001[25]
  # And the test is not vacuous: a skewed label distribution fails it.
  assert _chi_square(labels + 1_000 * (np.arange(10) == 0)) > CHI2_CRITICAL_001[9]


def test_deterministic_from_seed():
  a = ar.make_splits(seed=3, sizes={'train': 1_000, 'test': 500})
  b = ar.make_splits(seed=3, sizes={'train': 1_000, 'test': 500})
  c = ar.make_splits(seed=4, sizes={'train': 1_000, 'test': 500})
  for name in a:
    for key in ('tokens', 'label'):
      np.testing.assert_array_equal(a[name][key], b[name][key])
  assert not np.array_equal(a['train']['tokens'], c['train']['tokens'])


def test_splits_are_independent_streams(splits):
  rows = {name: {row.tobytes() for row in split['tokens']} for name, split in splits.items()}
  # About 1.4e9 distinct sequences: a shared stream would repeat whole blocks; independent ones
  # share about 100,000 * 20,000 / 1.4e9 ~ 1.4 test sequences with training.
  assert len(rows['test'] & rows['train']) < 10
  assert len(rows['validation'] & rows['train']) < 10
  assert len(rows['test'] & rows['validation']) < 10
  # Resizing one split leaves the others unchanged.
  small = ar.make_splits(seed=0, sizes={'train': 10, 'test': 20_000})
  np.testing.assert_array_equal(small['test']['tokens'], splits['test']['tokens'])


def test_rejects_more_pairs_than_letters():
  with pytest.raises(ValueError, match='num_pairs'):
    ar.generate(1, np.random.default_rng(0), num_pairs=27)
