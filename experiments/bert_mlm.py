"""BERT pre-training (masked LM + next sentence prediction) on the offline corpus, byte-level.

"BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding" (Devlin et al.
2018, arXiv:1810.04805), section 3.1 and appendix A.1, on the Python reference-manual text that
ships with CPython (`jaxpapers.data.text_corpus`).

    python -m experiments.bert_mlm --config=experiments/configs/bert_mlm.py:small \
        --workdir=runs/bert_mlm

Inputs are byte-level: ids 0-3 are [PAD], [CLS], [SEP], [MASK] and byte b is id b + 4. Example i
is "[CLS] A [SEP] B [SEP]" with A the `segment` bytes at offset i * stride of the split and B,
with probability 1/2, the bytes that follow A ("IsNext", NSP label 0), otherwise `segment` bytes
from a uniformly random offset (label 1); segment ids are 0 up to the first [SEP], 1 after. The
choice of B is a pure function of (data seed, i). Every training step corrupts its batch with
`bert.mask_tokens` (15% of the non-special tokens chosen; 80% [MASK], 10% random, 10% kept) under
the step's key, and minimises `bert.pretraining_loss` (masked-LM cross-entropy at the chosen
positions plus the NSP cross-entropy).

Each evaluation corrupts the held-out examples with fixed keys (one per example index, so every
evaluation sees the same masks) and reports `mlm_accuracy` (argmax = original byte at the chosen
positions), `mlm_loss`, `nsp_accuracy`, and the baseline `unigram_accuracy`: always predicting the
training split's most frequent byte (the space) at the same positions. Every example has the same
number of chosen positions (15% of its 2 x segment bytes), so per-example means are per-token means.

Departures from the paper: bytes instead of WordPiece tokens; masks drawn anew at every step
(RoBERTa's dynamic masking) where the paper fixed them in its data (duplicated 10 times);
sequences of one length and no 90%/10% split between 128- and 512-token phases; sizes and the
optimiser (AdamW, cosine schedule) for a short CPU run, where the paper uses Adam with 1e-4,
10,000 warm-up steps and linear decay for 1M steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.data import pipeline, text_corpus
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState
from jaxpapers.transformers import bert

PAD, CLS, SEP, MASK = 0, 1, 2, 3
BYTE_OFFSET = 4
VOCAB_SIZE = BYTE_OFFSET + text_corpus.VOCAB_SIZE


class SentencePairs:
  """Random access over the "[CLS] A [SEP] B [SEP]" examples of one split (see module docstring)."""

  def __init__(self, data: np.ndarray, segment: int, stride: int, seed: int):
    if len(data) < 2 * segment:
      raise ValueError(f'{len(data)} bytes cannot hold two segments of {segment}')
    self._data, self._segment, self._stride, self._seed = data, segment, stride, seed
    self._count = (len(data) - 2 * segment) // stride + 1

  def __len__(self) -> int:
    return self._count

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self._count:
      raise IndexError(index)
    n, start = self._segment, index * self._stride
    rng = np.random.default_rng([self._seed, index])
    is_next = rng.random() < 0.5
    b_start = start + n if is_next else int(rng.integers(0, len(self._data) - n + 1))
    a = self._data[start:start + n].astype(np.int32) + BYTE_OFFSET
    b = self._data[b_start:b_start + n].astype(np.int32) + BYTE_OFFSET
    tokens = np.concatenate([[CLS], a, [SEP], b, [SEP]]).astype(np.int32)
    segments = np.concatenate([np.zeros(n + 2, np.int32), np.ones(n + 1, np.int32)])
    return {'tokens': tokens, 'segments': segments, 'nsp_label': np.int32(0 if is_next else 1),
            'index': np.int32(index)}


class BertMLM(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    self.model = zoo.build_from_config(config.model, vocab_size=VOCAB_SIZE,
                                       max_len=2 * d.segment + 3)
    train, held_out = text_corpus.load('train'), text_corpus.load('validation')
    held_out = SentencePairs(held_out, d.segment, d.segment, d.seed)
    self.data = pipeline.Splits(
        train=SentencePairs(train, d.segment, d.train_stride, d.seed),
        eval=[held_out[i] for i in range(d.eval_examples or len(held_out))])
    self._most_frequent = int(np.argmax(np.bincount(train, minlength=256))) + BYTE_OFFSET
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    params_rng, dropout_rng = jax.random.split(rng)
    tokens = jnp.zeros((1, self.model.config.max_len), jnp.int32)
    params = self.model.init({'params': params_rng, 'dropout': dropout_rng}, tokens)['params']
    return TrainState.create(params=params, tx=self.tx, rng=rng)

  def _corrupt(self, key, tokens):
    return bert.mask_tokens(key, tokens, vocab_size=VOCAB_SIZE, mask_id=MASK,
                            special_ids=(PAD, CLS, SEP), mask_prob=self.config.mask.prob)

  def _forward(self, params, inputs, batch, **kwargs):
    return self.model.apply({'params': params}, inputs, batch['segments'],
                            batch['tokens'] != PAD, **kwargs)

  def train_step(self, state: TrainState, batch):
    inputs, chosen = self._corrupt(state.step_rng('mask'), batch['tokens'])

    def loss_fn(params):
      mlm, nsp = self._forward(params, inputs, batch, train=True,
                               rngs={'dropout': state.step_rng('dropout')})
      loss = bert.pretraining_loss(mlm, nsp, batch['tokens'], chosen, batch['nsp_label'])
      return loss, (mlm, nsp)

    (loss, (mlm, nsp)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    correct = (jnp.argmax(mlm, -1) == batch['tokens']) & chosen
    return state.apply_gradients(self.tx, grads), {
        'loss': loss, 'mlm_accuracy': jnp.sum(correct) / jnp.sum(chosen),
        'nsp_accuracy': jnp.mean(jnp.argmax(nsp, -1) == batch['nsp_label'])}

  def eval_step(self, state: TrainState, batch):
    key = jax.random.PRNGKey(self.config.mask.eval_seed)

    def corrupt_row(index, row):
      inputs, chosen = self._corrupt(jax.random.fold_in(key, index), row[None])
      return inputs[0], chosen[0]

    inputs, chosen = jax.vmap(corrupt_row)(batch['index'], batch['tokens'])
    mlm, nsp = self._forward(state.params, inputs, batch)
    tokens, mask = batch['tokens'], batch['mask']
    per_row = jnp.maximum(jnp.sum(chosen, axis=1), 1)

    def mean_over_chosen(values):  # [B, L] -> sum over the batch of each row's mean at `chosen`.
      return jnp.sum(jnp.sum(values * chosen, axis=1) / per_row * mask)

    nll = optax.softmax_cross_entropy_with_integer_labels(mlm, tokens)
    return {
        'mlm_accuracy': mean_over_chosen(jnp.argmax(mlm, -1) == tokens),
        'mlm_loss': mean_over_chosen(nll),
        'unigram_accuracy': mean_over_chosen(tokens == self._most_frequent),
        'nsp_accuracy': jnp.sum((jnp.argmax(nsp, -1) == batch['nsp_label']) * mask),
        'count': jnp.sum(mask),
    }


if __name__ == '__main__':
  cli.run(BertMLM)
