"""Supervised image classification: any zoo classifier on any TFDS image dataset.

    python -m experiments.classify --config=experiments/configs/classify.py:digits_cnn --workdir=runs/digits

Softmax cross-entropy, the optimiser of `config.optim`, accuracy and loss on the eval split;
augmentation (random crops of the zero-padded image, horizontal flips) runs on the device. Models
with batch statistics or dropout work unchanged: non-parameter variables are the state's
`model_state`, and dropout draws from the per-step key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.errors import ConfigError
from jaxpapers.data import augment, pipeline
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState


class Classify(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    try:
      self.model = zoo.build(config.model)
    except KeyError as e:
      raise ConfigError(f'config.model={config.model!r}: {e.args[0]}') from None
    d = config.data
    preprocess = pipeline.image_classification_preprocess()
    self._train_source, self._eval_source = (
        pipeline.load_source(d.name, split, d.data_dir or None) for split in (d.train_split, d.eval_split))
    self._num_classes = self._train_source.dataset_info.features['label'].num_classes
    if d.in_memory:
      self._train_source, self._eval_source = (
          pipeline.in_memory(s, preprocess) for s in (self._train_source, self._eval_source))
      preprocess = None
    self._preprocess = preprocess
    example = self._train_source[0]
    self._image_shape = (preprocess(example) if preprocess else example)['image'].shape
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self._check_model_fits_data()

  def _check_model_fits_data(self):
    """A model built for other image sizes fails here, in one line, not deep inside XLA."""
    try:
      variables = jax.eval_shape(self.init, jax.random.PRNGKey(0))
      # Too small an input empties a layer; JAX 0.12 initialises its zero-fan-in kernel (0.10 raised).
      empty = [jax.tree_util.keystr(path) for path, p in
               jax.tree_util.tree_flatten_with_path(variables.params)[0] if p.size == 0]
      if empty:
        raise ValueError(f'the parameters {", ".join(empty)} are empty')
    except Exception as e:  # Shape errors surface as TypeError, ValueError, ZeroDivisionError...
      reason = (str(e).strip().splitlines() or [''])[0]
      raise ConfigError(f'model {self.config.model!r} does not accept {self.config.data.name} '
                        f'images of shape {self._image_shape} ({type(e).__name__}: {reason})') from e
    logits = jax.eval_shape(lambda v: self.model.apply(
        {'params': v.params, **v.model_state}, jnp.zeros((1, *self._image_shape)), train=False),
        variables)
    if logits.shape[-1] != self._num_classes:
      raise ConfigError(f'model {self.config.model!r} has {logits.shape[-1]} outputs; '
                        f'{self.config.data.name} has {self._num_classes} classes')

  def init(self, rng):
    params_rng, dropout_rng = jax.random.split(rng)
    variables = self.model.init({'params': params_rng, 'dropout': dropout_rng},
                                jnp.zeros((1, *self._image_shape)), train=False)
    params = variables.pop('params')
    return TrainState.create(params=params, tx=self.tx, rng=rng, model_state=dict(variables))

  def augment(self, images, key):
    d = self.config.data
    crop_key, flip_key = jax.random.split(key)
    if d.random_crop_padding:
      images = augment.random_crop_with_padding(images, crop_key, d.random_crop_padding)
    if d.random_flip:
      images = augment.random_flip_left_right(images, flip_key)
    return images

  def train_step(self, state: TrainState, batch):
    images = self.augment(batch['image'], state.step_rng('augment'))

    def loss_fn(params):
      logits, model_state = self.model.apply(
          {'params': params, **state.model_state}, images, train=True,
          rngs={'dropout': state.step_rng('dropout')}, mutable=list(state.model_state))
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
      return loss, (logits, model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return state.apply_gradients(self.tx, grads, model_state=dict(model_state)), {'loss': loss, 'accuracy': accuracy}

  def eval_step(self, state: TrainState, batch):
    logits = self.model.apply({'params': state.params, **state.model_state}, batch['image'], train=False)
    mask = batch['mask']
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    correct = jnp.argmax(logits, -1) == batch['label']
    return {'loss': jnp.sum(loss * mask), 'accuracy': jnp.sum(correct * mask), 'count': jnp.sum(mask)}

  def train_data(self):
    return pipeline.train_batches(self._train_source, global_batch_size=self.config.train.batch_size,
                                  seed=self.config.seed, preprocess=self._preprocess)

  def eval_data(self):
    return pipeline.eval_batches(self._eval_source, global_batch_size=self.config.train.batch_size,
                                 preprocess=self._preprocess)


if __name__ == '__main__':
  cli.run(Classify)
