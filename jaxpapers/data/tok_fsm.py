"""TokFSM: sequences of a random finite state machine's states, each written as several digits.

The algorithmic task of "Codebook Features: Sparse and Discrete Interpretability for Neural
Networks" (Tamkin, Taufeeque, Goodman 2023, arXiv:2310.17230, section 4): a random FSM with
`num_states` states, each with `edges` outgoing transitions to distinct random states, taken with
equal probability. A sequence is a walk from a random state, each state written as its number in
base `base` with `digits` digits (so one state spans several tokens): a next-token predictor must
track the current state, which no single token names. Tokens are the digits 0..base-1.

`walks` returns the tokens [N, steps * digits] and the state of each token [N, steps * digits];
`valid_next` says, for each position, which tokens a correct model may predict next.
"""

from __future__ import annotations

import numpy as np


class FSM:
  """A random FSM: `successors[s]` are the `edges` states reachable from state s."""

  def __init__(self, num_states: int, edges: int, base: int, digits: int, seed: int):
    if base ** digits < num_states:
      raise ValueError(f'{digits} digits in base {base} cannot write {num_states} states')
    rng = np.random.default_rng(seed)
    self.num_states, self.base, self.digits = num_states, base, digits
    self.successors = np.stack([rng.choice(num_states, edges, replace=False)
                                for _ in range(num_states)])
    self.codes = np.stack([(np.arange(num_states) // base ** (digits - 1 - i)) % base
                           for i in range(digits)], 1)  # [states, digits], most significant first

  def walks(self, num: int, steps: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    states = np.zeros((num, steps), np.int64)
    states[:, 0] = rng.integers(self.num_states, size=num)
    for t in range(1, steps):
      choice = rng.integers(self.successors.shape[1], size=num)
      states[:, t] = self.successors[states[:, t - 1], choice]
    tokens = self.codes[states].reshape(num, steps * self.digits)
    return tokens.astype(np.int32), np.repeat(states, self.digits, axis=1)

  def valid_next(self, tokens: np.ndarray, states: np.ndarray) -> np.ndarray:
    """[N, L, base] bool: the tokens that can follow each position's prefix of the walk."""
    n, length = tokens.shape
    valid = np.zeros((n, length, self.base), bool)
    for i in range(n):
      for p in range(length):
        place = (p + 1) % self.digits  # Digit index of the next token within its state.
        if place == 0:  # The next token starts a successor of the current state.
          candidates = self.successors[states[i, p]]
        else:  # It continues the current state's code: but the model may not know the state
          # yet from its first digits, so any successor of the previous state matching them.
          start = p - place + 1
          previous = self.successors[states[i, start - 1]] if start > 0 else np.arange(
              self.num_states)
          prefix = tokens[i, start:p + 1]
          candidates = [s for s in previous if np.array_equal(self.codes[s, :place], prefix)]
        valid[i, p, self.codes[np.asarray(candidates, np.int64), place]] = True
    return valid
