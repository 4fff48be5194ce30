"""The Transformer learns copy, reverse or sort, decoded greedily and with beam search.

"Attention Is All You Need" (Vaswani et al. 2017, arXiv:1706.03762).

    python -m experiments.transformer --config=experiments/configs/transformer.py:reverse \
        --workdir=runs/transformer_reverse

Trains a zoo Transformer (`transformer_small`: shared embeddings, sinusoidal positions,
post-norm) with teacher forcing on the label-smoothed cross-entropy of section 5.4 and the Adam
settings and warm-up schedule of section 5.3 (eq. 3), on strings from
`jaxpapers.data.sequence_tasks`. Each evaluation covers the validation split:

  * teacher forcing: `loss` (cross-entropy per target token, without smoothing),
    `token_accuracy`, and `sequence_accuracy` (every target token the argmax);
  * decoding from the source alone, as at test time in the paper (section 6.1): `greedy_accuracy`
    and `beam_accuracy`, the fraction of strings whose decoded output, end token included, equals
    the target exactly (beam size and length penalty from `config.decode`, the paper's 4 and 0.6).

Both decoders run inside the compiled eval step (`lax.while_loop` over the KV cache). The task's
outputs are as long as its inputs, so decoding stops at the target length (`max_len + 1`) where
the paper allows input length + 50.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.data import pipeline, sequence_tasks
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState
from jaxpapers.transformers import transformer


def _examples(split: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
  """One dict per string: source, target, and the decoder input (target shifted right)."""
  target_in = sequence_tasks.decoder_inputs(split['target'])
  return [{'source': s, 'target': t, 'target_in': ti}
          for s, t, ti in zip(split['source'], split['target'], target_in)]


class Transduction(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    if d.task not in sequence_tasks.TASKS:
      raise ConfigError(f'config.data.task={d.task!r}; valid: {", ".join(sequence_tasks.TASKS)}')
    self.model = zoo.build_from_config(config.model,
                                       vocab_size=sequence_tasks.vocab_size(d.num_symbols),
                                       pad_id=sequence_tasks.PAD)
    splits = sequence_tasks.make_splits(
        d.task, d.seed, {'train': d.train_size, 'validation': d.eval_size},
        num_symbols=d.num_symbols, min_len=d.min_len, max_len=d.max_len)
    self.data = pipeline.Splits(train=_examples(splits['train']),
                                eval=_examples(splits['validation']))
    self._max_decode_len = d.max_len + 1
    # Token-level eval metrics are sums over tokens; the loop divides by the number of strings.
    self._tokens_per_string = float(np.mean(np.sum(splits['validation']['target'] != 0, axis=1)))
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    d = self.config.data
    params = self.model.init(rng, jnp.zeros((1, d.max_len), jnp.int32),
                             jnp.zeros((1, d.max_len + 1), jnp.int32))['params']
    return TrainState.create(params=params, tx=self.tx, rng=rng)

  def train_step(self, state: TrainState, batch):
    weights = (batch['target'] != sequence_tasks.PAD).astype(jnp.float32)

    def loss_fn(params):
      logits = self.model.apply({'params': params}, batch['source'], batch['target_in'],
                                train=True, rngs={'dropout': state.step_rng('dropout')})
      losses = transformer.label_smoothed_cross_entropy(logits, batch['target'],
                                                        self.config.loss.label_smoothing)
      return jnp.sum(losses * weights) / jnp.sum(weights), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    correct = (jnp.argmax(logits, -1) == batch['target']) * weights
    return state.apply_gradients(self.tx, grads), {
        'loss': loss, 'token_accuracy': jnp.sum(correct) / jnp.sum(weights)}

  def eval_step(self, state: TrainState, batch):
    params, mask, target = state.params, batch['mask'], batch['target']
    weights = (target != sequence_tasks.PAD).astype(jnp.float32) * mask[:, None]
    logits = self.model.apply({'params': params}, batch['source'], batch['target_in'])
    nll = transformer.label_smoothed_cross_entropy(logits, target, 0.0)
    correct = jnp.argmax(logits, -1) == target
    per_token = 1.0 / self._tokens_per_string
    decode = dict(max_decode_len=self._max_decode_len, bos_id=sequence_tasks.BOS,
                  eos_id=sequence_tasks.EOS)
    greedy = transformer.greedy_decode(self.model, params, batch['source'], **decode)
    beams, _ = transformer.beam_decode(self.model, params, batch['source'],
                                       beam_size=self.config.decode.beam_size,
                                       alpha=self.config.decode.alpha, **decode)
    return {
        'loss': per_token * jnp.sum(nll * weights),
        'token_accuracy': per_token * jnp.sum(correct * weights),
        'sequence_accuracy': jnp.sum(jnp.all(correct | (weights == 0), axis=1) * mask),
        'greedy_accuracy': jnp.sum(jnp.all(greedy == target, axis=1) * mask),
        'beam_accuracy': jnp.sum(jnp.all(beams[:, 0] == target, axis=1) * mask),
        'count': jnp.sum(mask),
    }


if __name__ == '__main__':
  cli.run(Transduction)
