"""Copy / reverse / sort data: layout, each task's rule, determinism, independent splits."""

import numpy as np
import pytest

from jaxpapers.data import sequence_tasks as st

LENGTHS = dict(num_symbols=5, min_len=2, max_len=7)


def _rows(data):
  """(symbols of the source, output symbols before the end token) per example."""
  for source, target in zip(data['source'], data['target']):
    n = int(np.sum(source != st.PAD))
    assert np.all(source[:n] >= st.FIRST_SYMBOL) and np.all(source[n:] == st.PAD)
    assert target[n] == st.EOS and np.all(target[n + 1:] == st.PAD)  # End token, then padding.
    yield source[:n], target[:n]


@pytest.mark.parametrize('task, rule', [
    ('copy', lambda s: s), ('reverse', lambda s: s[::-1]), ('sort', np.sort)])
def test_each_task_applies_its_rule(task, rule):
  data = st.generate(task, 300, np.random.default_rng(0), **LENGTHS)
  assert data['source'].shape == (300, 7) and data['target'].shape == (300, 8)
  assert data['source'].dtype == data['target'].dtype == np.int32
  lengths = []
  for source, output in _rows(data):
    np.testing.assert_array_equal(output, rule(source))
    lengths.append(len(source))
  assert set(lengths) == set(range(2, 8))  # Every length from min_len to max_len occurs.
  assert set(np.unique(data['source'])) == {st.PAD, *range(st.FIRST_SYMBOL, st.FIRST_SYMBOL + 5)}
  assert st.vocab_size(5) == 8


def test_decoder_inputs_shift_right_behind_the_start_token():
  target = np.array([[5, 6, st.EOS, st.PAD], [7, st.EOS, st.PAD, st.PAD]], np.int32)
  np.testing.assert_array_equal(st.decoder_inputs(target),
                                [[st.BOS, 5, 6, st.EOS], [st.BOS, 7, st.EOS, st.PAD]])


def test_splits_are_deterministic_and_independent():
  sizes = {'train': 200, 'validation': 50}
  first = st.make_splits('reverse', 3, sizes, **LENGTHS)
  again = st.make_splits('reverse', 3, sizes, **LENGTHS)
  for name in sizes:
    for key in ('source', 'target'):
      np.testing.assert_array_equal(first[name][key], again[name][key])
  assert len(first['validation']['source']) == 50
  assert not np.array_equal(first['train']['source'][:50], first['validation']['source'])
  other_seed = st.make_splits('reverse', 4, sizes, **LENGTHS)
  assert not np.array_equal(first['train']['source'], other_seed['train']['source'])
  # A split's strings do not depend on which other splits are drawn with it.
  alone = st.make_splits('reverse', 3, {'validation': 50}, **LENGTHS)
  np.testing.assert_array_equal(alone['validation']['source'], first['validation']['source'])


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match='valid: copy, reverse, sort'):
    st.generate('shuffle', 1, np.random.default_rng(0), **LENGTHS)
  with pytest.raises(ValueError, match='min_len'):
    st.generate('copy', 1, np.random.default_rng(0), num_symbols=3, min_len=5, max_len=4)
