"""An offline English corpus that ships with every CPython: the reference-manual topics of help().

`pydoc_data/topics.py` (part of the standard library, read by `help('if')`, `help('for')`, ...)
holds the text of the Python Language Reference's topics: 79 documents and about 466,000 UTF-8
bytes of English prose with code examples in CPython 3.11. It needs no network, no download and
no extra package, so the language-model experiments (`experiments/char_lm.py`, GPT-2 style, and
`experiments/bert_mlm.py`, BERT's masked LM) can run anywhere.

Splits are by document: in name order, every tenth document starting with the seventh (8 of 79
in 3.11, 11% of the bytes) is held out as 'validation', the rest is 'train'. Each split is its
documents' texts in name order, joined with a blank line, as UTF-8 bytes: a byte-level vocabulary
of 256 symbols. The text differs between Python versions (it is regenerated with each release);
`fingerprint()` identifies the exact corpus a result was measured on.

`ngram_log_probs` gives the count-based unigram and bigram baselines the experiments compare
against: unigram counts with add-one smoothing; bigram counts interpolated with that unigram,
p(b | a) = (c(a b) + p_uni(b)) / (c(a) + 1) (a Dirichlet prior of total weight one), so unseen
pairs keep a probability and frequent contexts follow their counts.
"""

from __future__ import annotations

import hashlib
import importlib

import numpy as np

from jaxpapers.errors import DatasetNotFoundError

SPLITS = ('train', 'validation')
VOCAB_SIZE = 256  # Bytes.
_HELD_OUT_EVERY, _HELD_OUT_OFFSET = 10, 6


def documents() -> dict[str, str]:
  """{topic name: text} of this Python's `pydoc_data.topics`, in name order."""
  try:
    topics = importlib.import_module('pydoc_data.topics').topics
  except ImportError:
    raise DatasetNotFoundError(
        'this Python has no pydoc_data.topics (the reference-manual text of help()); the text '
        'corpus needs a standard CPython install') from None
  return {name: topics[name] for name in sorted(topics)}


def split_names() -> dict[str, list[str]]:
  """{split: its document names}."""
  names = list(documents())
  held_out = names[_HELD_OUT_OFFSET::_HELD_OUT_EVERY]
  return {'train': [n for n in names if n not in held_out], 'validation': held_out}


def load(split: str) -> np.ndarray:
  """The split as uint8 UTF-8 bytes."""
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; valid: {", ".join(SPLITS)}')
  docs = documents()
  text = '\n\n'.join(docs[name] for name in split_names()[split])
  return np.frombuffer(text.encode('utf-8'), np.uint8).copy()


def fingerprint() -> str:
  """The first 16 hex digits of the SHA-256 of the whole corpus (both splits)."""
  digest = hashlib.sha256()
  for name, text in documents().items():
    digest.update(name.encode() + b'\0' + text.encode('utf-8') + b'\0')
  return digest.hexdigest()[:16]


def num_characters(data: np.ndarray) -> int:
  """Unicode characters in UTF-8 bytes: the bytes that are not continuation bytes (10xxxxxx)."""
  return int(np.sum((np.asarray(data) & 0xC0) != 0x80))


class Windows:
  """Random access over windows of a byte array: item i is data[i * stride : i * stride + length].

  Items are {'tokens': int32 [length]}, for `jaxpapers.data.pipeline`; a tail shorter than
  `length` is dropped.
  """

  def __init__(self, data: np.ndarray, length: int, stride: int):
    if len(data) < length:
      raise ValueError(f'{len(data)} bytes cannot fill a window of {length}')
    self._data, self._length, self._stride = np.asarray(data), length, stride
    self._count = (len(data) - length) // stride + 1

  def __len__(self) -> int:
    return self._count

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self._count:
      raise IndexError(index)
    start = index * self._stride
    return {'tokens': self._data[start:start + self._length].astype(np.int32)}


def ngram_log_probs(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(unigram [256], bigram [256 previous, 256 next]) natural-log probabilities from `train`."""
  train = np.asarray(train, np.int64)
  unigram = (np.bincount(train, minlength=VOCAB_SIZE) + 1.0)
  unigram /= unigram.sum()
  pairs = np.bincount(train[:-1] * VOCAB_SIZE + train[1:], minlength=VOCAB_SIZE ** 2)
  pairs = pairs.reshape(VOCAB_SIZE, VOCAB_SIZE).astype(np.float64)
  bigram = (pairs + unigram[None, :]) / (pairs.sum(axis=1, keepdims=True) + 1.0)
  return np.log(unigram), np.log(bigram)
