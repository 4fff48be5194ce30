"""Synthetic sequence transduction: copy, reverse and sort, for sequence-to-sequence models.

The algorithmic tasks used to probe "Attention Is All You Need"-style encoder-decoders (Vaswani et
al. 2017, arXiv:1706.03762) without a translation corpus: the source is a random string of
symbols, the target its copy, its reversal or its sorted version, followed by an end token. A model
that has learned the task transduces held-out strings exactly, so sequence accuracy (every target
token right) is the measure.

Vocabulary: 0 = padding, 1 = start (the decoder's first input), 2 = end, then `num_symbols`
symbols (ids 3 .. num_symbols + 2). Sources have `min_len` to `max_len` symbols, drawn uniformly,
padded to `max_len`; targets have the transduced symbols and the end token, padded to
`max_len + 1`. `decoder_inputs` shifts a target right behind the start token (teacher forcing).

Generation is vectorised NumPy from a `numpy.random.Generator`; `make_splits` draws each split from
its own child of one `SeedSequence`, keyed by the split's name, so the splits are independent and
the whole set is a pure function of the seed. Held-out strings are not removed from training: with
10 symbols and 8 or more of them there are at least 1e8 strings, so a 100,000-string training split
shares about 0.1% of any held-out split's strings of the shortest length, fewer of longer ones.
"""

from __future__ import annotations

import zlib

import numpy as np

PAD, BOS, EOS = 0, 1, 2
FIRST_SYMBOL = 3
TASKS = ('copy', 'reverse', 'sort')


def vocab_size(num_symbols: int) -> int:
  return FIRST_SYMBOL + num_symbols


def generate(task: str, num_examples: int, rng: np.random.Generator, *, num_symbols: int,
             min_len: int, max_len: int) -> dict[str, np.ndarray]:
  """{'source': int32 [N, max_len], 'target': int32 [N, max_len + 1]} for one task."""
  if task not in TASKS:
    raise ValueError(f'unknown task {task!r}; valid: {", ".join(TASKS)}')
  if not 1 <= min_len <= max_len:
    raise ValueError(f'need 1 <= min_len <= max_len; got {min_len}, {max_len}')
  lengths = rng.integers(min_len, max_len + 1, num_examples)
  symbols = rng.integers(FIRST_SYMBOL, FIRST_SYMBOL + num_symbols, (num_examples, max_len))
  positions = np.arange(max_len)[None, :]
  valid = positions < lengths[:, None]
  source = np.where(valid, symbols, PAD)
  if task == 'copy':
    output = source
  elif task == 'reverse':
    # Position j of the output reads position length - 1 - j of the source.
    index = np.where(valid, lengths[:, None] - 1 - positions, positions)
    output = np.take_along_axis(source, index, axis=1)
  else:
    # Padding sorts last when it is given a key above every symbol.
    output = np.sort(np.where(valid, symbols, np.iinfo(np.int64).max), axis=1)
    output = np.where(valid, output, PAD)
  target = np.concatenate([output, np.full((num_examples, 1), PAD)], axis=1)
  target[np.arange(num_examples), lengths] = EOS
  return {'source': source.astype(np.int32), 'target': target.astype(np.int32)}


def decoder_inputs(target: np.ndarray) -> np.ndarray:
  """The target shifted right behind the start token: [BOS, y_1, ..., y_{n-1}]."""
  start = np.full(target.shape[:-1] + (1,), BOS, target.dtype)
  return np.concatenate([start, target[..., :-1]], axis=-1)


def make_splits(task: str, seed: int, sizes: dict[str, int],
                **lengths) -> dict[str, dict[str, np.ndarray]]:
  """{split: generate(task, size, ..., **lengths)}, one independent stream per split name."""
  return {name: generate(task, size, np.random.default_rng(
      np.random.SeedSequence([seed, zlib.crc32(name.encode())])), **lengths)
          for name, size in sizes.items()}
