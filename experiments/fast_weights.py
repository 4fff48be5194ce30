"""Associative retrieval with fast weights and its baselines: Table 1 of Ba et al. 2016.

"Using Fast Weights to Attend to the Recent Past", Ba, Hinton, Mnih, Leibo, Ionescu, NIPS 2016,
arXiv:1610.06258, section 4.1.

    python -m experiments.fast_weights --config=experiments/configs/fast_weights.py:fast_weights_r20 \
        --workdir=runs/fast_weights_r20 --config.train.steps=20000

Trains `RetrievalClassifier` (embedding -> one recurrent layer of R units -> 100 ReLUs -> softmax)
with softmax cross-entropy on the generated training split, and reports the classification error and
loss on the validation and test splits, as Table 1 reports test error. Follows the paper's task
(K = 4 pairs, its split sizes), network and optimiser family (Adam, batches of 128); departs from it
in the training length (a CPU budget) and in the settings we could not confirm, listed in
`experiments/configs/fast_weights.py`.

The splits are generated in memory from `config.data.seed`; training batches go through
`pipeline.train_batches`, so shuffling, per-process slices and the iterator position saved in each
checkpoint are the pipeline's. Every evaluation covers both held-out splits in one pass: eval
examples carry a `test` flag, and `eval_step` returns each split's sums scaled so that the loop's
division by the total example count gives that split's own mean (`eval/validation_error`,
`eval/test_error`, ...). The error curve over training is therefore the run's TensorBoard events;
`eval_history` reads it back (`scripts/fast_weights_table.py` plots it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.data import associative_retrieval, pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.recurrent import fast_weights
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

EVAL_SPLITS = ('validation', 'test')


class FastWeightsRetrieval(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    self.model = zoo.build_from_config(config.model)
    if self.model.cell not in fast_weights.CELLS:
      raise ConfigError(f'cell={self.model.cell!r}; valid: {", ".join(fast_weights.CELLS)}')
    if self.model.cell == 'associative_lstm' and self.model.hidden_size % 2:
      raise ConfigError(f'hidden_size={self.model.hidden_size}: the associative LSTM needs an '
                        'even number of units (real and imaginary parts)')
    sizes = {'train': d.train_size, 'validation': d.validation_size, 'test': d.test_size}
    splits = associative_retrieval.make_splits(d.seed, num_pairs=d.num_pairs, sizes=sizes)
    self._sequence_length = associative_retrieval.sequence_length(d.num_pairs)
    held_out = [splits[name] for name in EVAL_SPLITS]
    self.data = pipeline.Splits(train=pipeline.ArrayRows(splits['train']), eval=pipeline.ArrayRows({
        'tokens': np.concatenate([s['tokens'] for s in held_out]),
        'label': np.concatenate([s['label'] for s in held_out]),
        'test': np.concatenate([np.full(len(s['label']), name == 'test', np.float32)
                                for name, s in zip(EVAL_SPLITS, held_out)]),
    }))
    self._split_sizes = {name: sizes[name] for name in EVAL_SPLITS}
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    params = self.model.init(rng, jnp.zeros((1, self._sequence_length), jnp.int32))['params']
    return TrainState.create(params=params, tx=self.tx, rng=rng)

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      logits = self.model.apply({'params': params}, batch['tokens'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
      return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    error = jnp.mean(jnp.argmax(logits, -1) != batch['label'])
    return state.apply_gradients(self.tx, grads), {'loss': loss, 'error': error}

  def eval_step(self, state: TrainState, batch):
    logits = self.model.apply({'params': state.params}, batch['tokens'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    wrong = (jnp.argmax(logits, -1) != batch['label']).astype(jnp.float32)
    mask, test = batch['mask'], batch['test']
    # The loop divides every sum by the total count; scaling by total / split size turns that into
    # each split's own mean.
    total = sum(self._split_sizes.values())
    sums = {'count': jnp.sum(mask)}
    for name, weight in (('validation', mask * (1.0 - test)), ('test', mask * test)):
      scale = total / self._split_sizes[name]
      sums[f'{name}_error'] = scale * jnp.sum(wrong * weight)
      sums[f'{name}_loss'] = scale * jnp.sum(loss * weight)
    return sums


if __name__ == '__main__':
  cli.run(FastWeightsRetrieval)
