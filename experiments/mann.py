"""One-shot classification with a memory-augmented network: Table 1 of Santoro et al. 2016.

"One-shot Learning with Memory-Augmented Neural Networks", Santoro, Bartunov, Botvinick, Wierstra,
Lillicrap 2016, arXiv:1605.06065, sections 2.1 and 4.1.

    python -m experiments.mann --config=experiments/configs/mann.py:glyphs --workdir=runs/mann

Trains `OneShotMANN` with softmax cross-entropy at every step of 5-way episodes (labels shown one
step late, a new label mapping per episode) drawn from the training classes, and reports accuracy
on episodes of held-out classes by the instance's occurrence within the episode:
`eval/accuracy_1` (first sight of a class: chance, 20%) to `eval/accuracy_10`, Table 1's columns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.data import font_glyphs, one_shot_episodes, pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState


class OneShotEpisodes(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    self.model = zoo.build_from_config(config.model, num_classes=d.num_classes)
    kwargs = dict(num_classes=d.num_classes, per_class=d.per_class)
    if d.name == 'digits':
      train_classes, eval_classes = (one_shot_episodes.digit_classes(digits) for digits in
                                     (one_shot_episodes.TRAIN_DIGITS, one_shot_episodes.TEST_DIGITS))
    elif d.name in font_glyphs.BUILDERS:
      train_classes, eval_classes = (
          one_shot_episodes.glyph_classes(d.name, split, d.data_dir or None)
          for split in ('train', 'test'))
    else:
      raise ConfigError(f'config.data.name={d.name!r}; valid: '
                        f'{", ".join(["digits", *font_glyphs.BUILDERS])}')
    self.data = pipeline.Splits(
        train=one_shot_episodes.Episodes(train_classes, d.train_episodes, d.seed, **kwargs),
        eval=one_shot_episodes.Episodes(eval_classes, d.eval_episodes, d.seed + 1, **kwargs))
    self._example = self.data.example()
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    ex = self._example
    params = self.model.init(rng, jnp.asarray(ex['inputs'])[None],
                             jnp.asarray(ex['labels'])[None])['params']
    return TrainState.create(params=params, tx=self.tx, rng=rng)

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      logits = self.model.apply({'params': params}, batch['inputs'], batch['labels'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean()
      return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['labels'])
    return state.apply_gradients(self.tx, grads), {'loss': loss, 'accuracy': accuracy}

  def eval_step(self, state: TrainState, batch):
    logits = self.model.apply({'params': state.params}, batch['inputs'], batch['labels'])
    correct = (jnp.argmax(logits, -1) == batch['labels']).astype(jnp.float32)
    mask = batch['mask'][:, None]
    classes = self.config.data.num_classes
    sums = {'count': jnp.sum(batch['mask']), 'accuracy': jnp.sum(correct.mean(1) * batch['mask'])}
    for k in range(1, self.config.data.per_class + 1):
      # Every episode shows each of its classes a k-th time exactly once.
      sums[f'accuracy_{k}'] = jnp.sum(correct * (batch['occurrence'] == k) * mask) / classes
    return sums


if __name__ == '__main__':
  cli.run(OneShotEpisodes)
