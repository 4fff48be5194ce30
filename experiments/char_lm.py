"""A GPT-2-style byte-level language model on the offline corpus: held-out bits per character.

"Language Models are Unsupervised Multitask Learners" (Radford et al. 2019; GPT-2), trained on the
Python reference-manual text that ships with CPython (`jaxpapers.data.text_corpus`).

    python -m experiments.char_lm --config=experiments/configs/char_lm.py:small \
        --workdir=runs/char_lm

Trains a zoo GPT (`gpt_bytes_small`: pre-norm, tied embeddings, learned positions) on random
windows of the training documents to predict each next byte. Each evaluation reads the held-out
documents in consecutive, non-overlapping windows of `context + 1` bytes (every byte but each
window's first is predicted once, from the bytes before it in its window; a tail shorter than a
window is left out; `data.eval_windows` > 0 reads only that many windows) and reports

  * `bits_per_byte`: the mean cross-entropy in bits per predicted byte, and `bits_per_char`, the
    same total divided by the number of Unicode characters among those bytes (the corpus is almost
    all ASCII, so the two nearly agree);
  * on the same predicted bytes, two count-based baselines fitted to the training split
    (`text_corpus.ngram_log_probs`): `unigram_bits_per_char` and `bigram_bits_per_char` (and
    `_per_byte`).

After each evaluation the `text_samples` evaluator continues a held-out prompt (`gpt.generate`,
top-k sampling) and appends it to `<workdir>/samples.txt`.

Departures from GPT-2: the byte vocabulary (GPT-2 uses byte-level BPE over these same 256 bytes),
the model and context sizes, and AdamW with a cosine schedule sized for a CPU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxpapers import zoo
from jaxpapers.data import pipeline, text_corpus
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState
from jaxpapers.transformers import gpt


class CharLM(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    self.model = zoo.build_from_config(config.model, vocab_size=text_corpus.VOCAB_SIZE,
                                       max_len=d.context)
    train, held_out = text_corpus.load('train'), text_corpus.load('validation')
    held_out = text_corpus.Windows(held_out, d.context + 1, d.context)
    targets = np.stack([held_out[i]['tokens'] for i in range(d.eval_windows or len(held_out))])
    self.data = pipeline.Splits(train=text_corpus.Windows(train, d.context + 1, d.train_stride),
                                eval=[{'tokens': t} for t in targets])
    self._prompt = targets[0, :config.sample.prompt_length]
    # Per-window sums become per-byte and per-character means once the loop divides by the
    # number of windows.
    self._bytes_per_window = d.context
    self._chars_per_window = text_corpus.num_characters(targets[:, 1:]) / len(targets)
    self._baselines = _baseline_bits(train, targets, self._chars_per_window)
    logging.info('corpus %s: %d training bytes, %d held-out windows of %d predicted bytes; %s',
                 text_corpus.fingerprint(), len(train), len(targets), d.context,
                 {k: round(v, 4) for k, v in self._baselines.items()})
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    params_rng, dropout_rng = jax.random.split(rng)
    params = self.model.init({'params': params_rng, 'dropout': dropout_rng},
                             jnp.zeros((1, self.config.data.context), jnp.int32))['params']
    return TrainState.create(params=params, tx=self.tx, rng=rng)

  def _nll(self, params, tokens, **kwargs):
    logits = self.model.apply({'params': params}, tokens[:, :-1], **kwargs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      return self._nll(params, batch['tokens'], train=True,
                       rngs={'dropout': state.step_rng('dropout')}).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(self.tx, grads), {'loss': loss,
                                                   'bits_per_byte': loss / math.log(2)}

  def eval_step(self, state: TrainState, batch):
    mask = batch['mask']
    bits = jnp.sum(self._nll(state.params, batch['tokens']), axis=1) / math.log(2) * mask
    return {'bits_per_byte': jnp.sum(bits) / self._bytes_per_window,
            'bits_per_char': jnp.sum(bits) / self._chars_per_window,
            'count': jnp.sum(mask),
            # Constants of the run, reported beside the model's figures (the loop divides by count).
            **{name: value * jnp.sum(mask) for name, value in self._baselines.items()}}

  def evaluation_fns(self):
    def continue_prompt(state, key):
      """A held-out prompt continued by `config.sample`'s top-k sampling, as text."""
      s = self.config.sample
      tokens = gpt.generate(self.model, state.params, self._prompt[None], key,
                            max_new_tokens=s.length, temperature=s.temperature, top_k=s.top_k)
      return bytes(np.asarray(tokens[0], np.uint8)).decode('utf-8', errors='replace')
    return {'continue_prompt': continue_prompt}


def _baseline_bits(train: np.ndarray, windows: np.ndarray, chars_per_window: float
                   ) -> dict[str, float]:
  """Unigram and bigram bits per byte and per character on the bytes the model predicts."""
  unigram, bigram = text_corpus.ngram_log_probs(train)
  previous, targets = windows[:, :-1], windows[:, 1:]
  results = {}
  for name, log_probs in (('unigram', unigram[targets]), ('bigram', bigram[previous, targets])):
    total = -float(np.sum(log_probs)) / math.log(2)
    results[f'{name}_bits_per_byte'] = total / targets.size
    results[f'{name}_bits_per_char'] = total / (chars_per_window * len(windows))
  return results


if __name__ == '__main__':
  cli.run(CharLM)
