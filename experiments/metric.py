"""Metric learning on the offline glyphs: Prototypical Networks, FaceNet's triplet loss, the siamese
network; scored by N-way K-shot episodes and pair verification on the evaluation alphabets.

    python -m experiments.metric --config=experiments/configs/metric.py:protonet_glyphs \
        --workdir=runs/metric/protonet

`config.method` picks the objective of `jaxpapers/metric/`:
  * `protonet`: each batch is an episode of `ways` classes x (`protonet.shots` support +
    the rest query) examples; `protonet.prototypical_loss` on the embeddings (Algorithm 1);
  * `triplet`: the batch's `ways` classes x `per_class` exemplars on the unit sphere,
    `facenet.triplet_loss` over every anchor-positive pair with its semi-hard negative;
  * `siamese`: from the same class-structured batch, one same and one different pair per class
    (`siamese.pairs_from_batch`), the binary cross-entropy of the L1 head.
Batches come from `jaxpapers.data.episodes.class_batches` over the background split (`train`),
held in memory. The network is a zoo preset (`config.model`); BatchNorm statistics, where the
network has them, are the state's `model_state`.

Evaluators (`config.evals`): `few_shot` (5- and 20-way, 1- and 5-shot on the `test` split's
classes: the nearest prototype in feature space, or for the siamese network its head's mean
score, `pair_scores`) and `verification` (same / different pairs, ten-fold threshold accuracy).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.data import episodes, pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.metric import facenet, protonet, siamese
from jaxpapers.train import cli, devices, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

METHODS = ('protonet', 'triplet', 'siamese')


def to_float(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32) / 255.0


class MetricLearning(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    c = config
    if c.method not in METHODS:
      raise ConfigError(f'config.method={c.method!r}; valid: {", ".join(METHODS)}')
    if c.train.batch_size != c.episode.ways * c.episode.per_class:
      raise ConfigError(f'config.train.batch_size={c.train.batch_size} must be episode.ways x '
                        f'episode.per_class = {c.episode.ways * c.episode.per_class}')
    if c.method == 'protonet' and not 0 < c.protonet.shots < c.episode.per_class:
      raise ConfigError(f'protonet.shots={c.protonet.shots} must leave queries among the '
                        f'episode.per_class={c.episode.per_class} examples')
    if c.method == 'siamese' and c.episode.per_class < 2:
      raise ConfigError('the siamese pairs need episode.per_class >= 2')
    rows = pipeline.in_memory(pipeline.load_source(c.data.name, 'train', c.data.data_dir or None))
    self._images = np.stack([row['image'] for row in rows])
    self._labels = np.array([row['label'] for row in rows], np.int32)
    self.model = zoo.build_from_config(c.model)
    self.tx = optim.make_optimizer(c.optim, c.train.steps)

  def train_data(self):
    c = self.config
    return episodes.class_batches(self._images, self._labels, ways=c.episode.ways,
                                  per_class=c.episode.per_class, seed=c.seed,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count())

  def eval_data(self):
    return None

  def init(self, rng):
    x = jnp.zeros((1, *self._images.shape[1:]))
    inputs = (x, x) if self.config.method == 'siamese' else (x,)
    variables = self.model.init(rng, *inputs, train=False)
    params = variables.pop('params')
    return TrainState.create(params=params, tx=self.tx, rng=rng, model_state=dict(variables))

  def _embed(self, params, model_state, images):
    method = 'embed' if self.config.method == 'siamese' else None
    out, model_state = self.model.apply({'params': params, **model_state}, to_float(images),
                                        train=True, mutable=list(model_state), method=method)
    return out, dict(model_state)

  def train_step(self, state: TrainState, batch):
    c = self.config
    ways, per_class = c.episode.ways, c.episode.per_class

    def loss_fn(params):
      embeddings, model_state = self._embed(params, state.model_state, batch['image'])
      if c.method == 'protonet':
        grouped = embeddings.reshape(ways, per_class, -1)
        loss, accuracy = protonet.prototypical_loss(grouped[:, :c.protonet.shots],
                                                    grouped[:, c.protonet.shots:])
        metrics = {'accuracy': accuracy}
      elif c.method == 'triplet':
        loss, metrics = facenet.triplet_loss(embeddings, batch['label'], c.triplet.margin)
      else:
        first, second, same = siamese.pairs_from_batch(ways, per_class, state.step_rng('pairs'))
        logits = self.model.apply({'params': params}, embeddings[first], embeddings[second],
                                  method='score')
        loss = siamese.pair_loss(logits, same)
        metrics = {'pair_accuracy': jnp.mean((logits > 0) == (same > 0.5))}
      return loss, (metrics, model_state)

    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads, model_state=model_state)
    return state, {'loss': loss, **metrics}

  # What the evaluators use.

  @functools.cached_property
  def _features(self):
    method = 'embed' if self.config.method == 'siamese' else None

    @functools.partial(jax.jit, out_shardings=devices.replicated(self.mesh))
    def features(variables, images):
      return self.model.apply(variables, to_float(images), method=method)
    return features

  @functools.cached_property
  def _scores(self):
    @functools.partial(jax.jit, out_shardings=devices.replicated(self.mesh))
    def scores(variables, a, b):
      return self.model.apply(variables, a, b, method='score')
    return scores

  def evaluation_fns(self):
    variables = lambda state: {'params': state.params, **state.model_state}
    fns = {'features': lambda state, images: self._features(variables(state), images)}
    if self.config.method == 'siamese':
      fns['pair_scores'] = lambda state, a, b: self._scores(variables(state), a, b)
    return fns


if __name__ == '__main__':
  cli.run(MetricLearning)
