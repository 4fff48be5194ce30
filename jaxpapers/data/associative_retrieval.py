"""The associative retrieval task of "Using Fast Weights to Attend to the Recent Past".

Ba, Hinton, Mnih, Leibo, Ionescu, NIPS 2016, arXiv:1610.06258, section 4.1.

A sequence shows K key-value pairs, keys being distinct lower-case letters drawn without replacement
and values single digits, then the separator `??`, then one of the K keys chosen uniformly as the
query. The target is the digit that followed the query key:

    c9k8j3f1??c -> 9        j0a5s5z2??a -> 5       (the paper's two examples)

A sequence has 2K + 3 tokens. The paper does not print K beyond its examples, both of which have
K = 4 (11 tokens), so `NUM_PAIRS = 4` is the default and K is an argument. Split sizes are the
paper's: 100,000 training, 10,000 validation and 20,000 test sequences.

The vocabulary has 37 symbols: 'a'..'z' are ids 0..25, '0'..'9' are ids 26..35 and '?' is 36. The
label is the digit's value 0..9 (a class index for a 10-way softmax), not its token id.

Generation is vectorised NumPy driven by a `numpy.random.Generator`: 100,000 sequences take well
under a second. `make_splits` draws each split from its own child of one `SeedSequence`, keyed by
the split's name, so the splits are independent streams and the whole set is a pure function of the
seed. The paper does not
say whether its splits were deduplicated; we do not deduplicate either (with K = 4 there are about
1.4e9 distinct sequences, so a 20,000-sequence test split shares about one sequence with training).
"""

from __future__ import annotations

import zlib

import numpy as np

LETTERS = 'abcdefghijklmnopqrstuvwxyz'
DIGITS = '0123456789'
SEPARATOR = '?'
VOCAB = LETTERS + DIGITS + SEPARATOR
VOCAB_SIZE = len(VOCAB)  # 37
DIGIT_OFFSET = len(LETTERS)  # Token id of '0'.
SEPARATOR_ID = VOCAB.index(SEPARATOR)
NUM_CLASSES = len(DIGITS)

NUM_PAIRS = 4
SPLIT_SIZES = {'train': 100_000, 'validation': 10_000, 'test': 20_000}

_CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB)}


def sequence_length(num_pairs: int = NUM_PAIRS) -> int:
  """Tokens per sequence: K pairs, two separators and the query."""
  return 2 * num_pairs + 3


def encode(text: str) -> np.ndarray:
  """'c9k8j3f1??c' -> int32 token ids."""
  return np.array([_CHAR_TO_ID[c] for c in text], dtype=np.int32)


def decode(tokens) -> str:
  """Token ids (any integer array-like of rank 1) -> readable string."""
  return ''.join(VOCAB[int(t)] for t in tokens)


def generate(num_examples: int, rng: np.random.Generator,
             num_pairs: int = NUM_PAIRS) -> dict[str, np.ndarray]:
  """Samples `num_examples` sequences.

  Args:
    num_examples: number of sequences N.
    rng: the NumPy generator all randomness comes from.
    num_pairs: K, the number of key-value pairs per sequence (1 <= K <= 26).

  Returns:
    {'tokens': int32 [N, 2K + 3], 'label': int32 [N]} with labels in 0..9.
  """
  if not 1 <= num_pairs <= len(LETTERS):
    raise ValueError(f'num_pairs must be in [1, {len(LETTERS)}], got {num_pairs}')
  # K distinct letters per row: the first K entries of a uniformly random permutation of 26.
  keys = np.argsort(rng.random((num_examples, len(LETTERS))), axis=1)[:, :num_pairs]
  values = rng.integers(0, len(DIGITS), size=(num_examples, num_pairs))
  query = rng.integers(0, num_pairs, size=num_examples)
  rows = np.arange(num_examples)

  tokens = np.empty((num_examples, sequence_length(num_pairs)), dtype=np.int32)
  tokens[:, 0:2 * num_pairs:2] = keys
  tokens[:, 1:2 * num_pairs:2] = values + DIGIT_OFFSET
  tokens[:, 2 * num_pairs:2 * num_pairs + 2] = SEPARATOR_ID
  tokens[:, -1] = keys[rows, query]
  return {'tokens': tokens, 'label': values[rows, query].astype(np.int32)}


def make_splits(seed: int, num_pairs: int = NUM_PAIRS,
                sizes: dict[str, int] | None = None) -> dict[str, dict[str, np.ndarray]]:
  """The train / validation / test sets, each from its own independent random stream.

  Args:
    seed: the one seed everything derives from.
    num_pairs: K, key-value pairs per sequence.
    sizes: split name -> number of sequences; defaults to the paper's `SPLIT_SIZES`.

  Returns:
    split name -> {'tokens', 'label'} as returned by `generate`.
  """
  sizes = SPLIT_SIZES if sizes is None else sizes
  # Each split's stream is keyed by its name (as SeedSequence.spawn keys children by index), so
  # adding or resizing one split never changes the others.
  return {name: generate(size, np.random.default_rng(_split_seed(seed, name)), num_pairs)
          for name, size in sizes.items()}


def _split_seed(seed: int, name: str) -> np.random.SeedSequence:
  return np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),))
