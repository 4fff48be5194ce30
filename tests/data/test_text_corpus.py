"""The offline text corpus: present, split by document, deterministic; windows; n-gram baselines."""

import importlib

import numpy as np
import pytest

from jaxpapers.data import text_corpus as tc
from jaxpapers.errors import DatasetNotFoundError


def test_the_corpus_is_english_text_split_by_document():
  docs = tc.documents()
  assert list(docs) == sorted(docs) and len(docs) > 50
  names = tc.split_names()
  assert not set(names['train']) & set(names['validation'])
  assert set(names['train']) | set(names['validation']) == set(docs)
  train, held_out = tc.load('train'), tc.load('validation')
  assert train.dtype == np.uint8 and len(train) > 300_000
  assert 0.05 < len(held_out) / (len(train) + len(held_out)) < 0.2
  text = bytes(held_out).decode('utf-8')
  assert text == '\n\n'.join(docs[n] for n in names['validation'])
  assert text.count(' the ') > 100  # Prose, not only code.
  # Deterministic: the same bytes and fingerprint on every call.
  np.testing.assert_array_equal(tc.load('validation'), held_out)
  assert tc.fingerprint() == tc.fingerprint() and len(tc.fingerprint()) == 16
  with pytest.raises(ValueError, match='valid: train, validation'):
    tc.load('test')


def test_missing_pydoc_data_is_a_clear_error(monkeypatch):
  def missing(name):
    raise ImportError(name)
  monkeypatch.setattr(importlib, 'import_module', missing)
  with pytest.raises(DatasetNotFoundError, match='pydoc_data'):
    tc.documents()


def test_num_characters_counts_utf8_lead_bytes():
  data = np.frombuffer('aé€😀b'.encode('utf-8'), np.uint8)  # 1 + 2 + 3 + 4 + 1 bytes.
  assert len(data) == 11 and tc.num_characters(data) == 5


def test_windows_slice_at_the_stride_and_drop_the_tail():
  data = np.arange(10, dtype=np.uint8)
  windows = tc.Windows(data, length=4, stride=3)
  assert len(windows) == 3  # Starts 0, 3, 6; a window at 9 would run past the end.
  np.testing.assert_array_equal(windows[2]['tokens'], [6, 7, 8, 9])
  assert windows[0]['tokens'].dtype == np.int32
  with pytest.raises(IndexError):
    windows[3]
  with pytest.raises(ValueError, match='cannot fill'):
    tc.Windows(data, length=11, stride=1)


def test_ngram_baselines_closed_form():
  train = np.frombuffer(b'abab', np.uint8)
  unigram, bigram = (np.exp(x) for x in tc.ngram_log_probs(train))
  a, b = ord('a'), ord('b')
  # Add-one unigram: (count + 1) / (4 + 256).
  np.testing.assert_allclose(unigram[[a, b, ord('z')]], np.array([3, 3, 1]) / 260)
  # Bigram with a unigram prior of weight one: 'a' was followed by 'b' twice.
  np.testing.assert_allclose(bigram[a, b], (2 + 3 / 260) / 3)
  np.testing.assert_allclose(bigram[a, a], (1 / 260 * 3) / 3)
  np.testing.assert_allclose(bigram[ord('z')], unigram)  # An unseen context backs off fully.
  np.testing.assert_allclose(bigram.sum(axis=1), np.ones(256), rtol=1e-12)
