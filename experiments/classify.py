"""Supervised image classification: any zoo classifier on any TFDS image dataset.

    python -m experiments.classify --config=experiments/configs/classify.py:digits_cnn --workdir=runs/digits

The model is `config.model` from the zoo, with a head for the dataset's number of classes where
the preset has a `num_classes` field. Softmax cross-entropy, the optimiser of `config.optim`,
accuracy and loss on the eval split;
augmentation (random crops of the zero-padded image, horizontal flips) runs on the device. Models
with batch statistics or dropout work unchanged: non-parameter variables are the state's
`model_state`, and dropout draws from the per-step key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxpapers import zoo
from jaxpapers.data import augment, pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.evaluators.classification import classification_sums
from experiments.configs import classify as configs
from jaxpapers.train import checkpoint, cli, devices, optim
from jaxpapers.train.loop import Experiment, train_and_evaluate
from jaxpapers.train.state import TrainState


class Classify(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.data = pipeline.from_config(config.data)
    self._num_classes = self.data.info.features[config.data.get('label_feature', 'label')].num_classes
    self.model = zoo.build_from_config(config.model)
    if getattr(self.model, 'num_classes', self._num_classes) != self._num_classes:
      # The data decides the head: an ImageNet preset fine-tuned on 10 classes gets a 10-way one
      # (with `init_from_exclude` keeping the converted head out).
      logging.info('%s: a %d-way head for %s', config.model.name, self._num_classes,
                   config.data.name)
      self.model = self.model.clone(num_classes=self._num_classes)
    self._image_shape = self.data.example()['image'].shape
    self._augment = augment.from_config(config.data.augment)
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self._check_model_fits_data()

  def _check_model_fits_data(self):
    """A model built for other image sizes fails here, in one line, not deep inside XLA."""
    name = self.config.model.name
    try:
      variables = jax.eval_shape(self.init, jax.random.PRNGKey(0))
      # Too small an input empties a layer; JAX 0.12 initialises its zero-fan-in kernel (0.10 raised).
      empty = [jax.tree_util.keystr(path) for path, p in
               jax.tree_util.tree_flatten_with_path(variables.params)[0] if p.size == 0]
      if empty:
        raise ValueError(f'the parameters {", ".join(empty)} are empty')
    except Exception as e:  # Shape errors surface as TypeError, ValueError, ZeroDivisionError...
      reason = (str(e).strip().splitlines() or [''])[0]
      raise ConfigError(f'model {name!r} does not accept {self.config.data.name} '
                        f'images of shape {self._image_shape} ({type(e).__name__}: {reason})') from e
    logits = jax.eval_shape(lambda v: self.model.apply(
        {'params': v.params, **v.model_state}, jnp.zeros((1, *self._image_shape)), train=False),
        variables)
    if logits.shape[-1] != self._num_classes:
      raise ConfigError(f'model {name!r} has {logits.shape[-1]} outputs; '
                        f'{self.config.data.name} has {self._num_classes} classes')

  def init(self, rng):
    return TrainState.init_model(self.model, jnp.zeros((1, *self._image_shape)), tx=self.tx,
                                 rng=rng)

  def augment(self, images, key):
    return self._augment(images, key)

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
    state = state.apply_gradients(self.tx, grads, model_state=dict(model_state))
    return state, {'loss': loss, 'accuracy': accuracy}

  def eval_step(self, state: TrainState, batch):
    return classification_sums(self.logits(state, batch['image']), batch['label'], batch['mask'])

  def logits(self, state: TrainState, images):
    return self.model.apply({'params': state.params, **state.model_state}, images, train=False)

  def evaluation_fns(self):
    return {'logits': self.logits}


def trained_classifier(workdir: str, preset: str = 'digits_cnn', data_dir: str = '') -> str:
  """Trains `classify:<preset>` in `workdir` unless a finished run is there; returns `workdir`.

  The fixed classifier of the `sample_quality` evaluator (about a minute on 2 CPU cores for
  digits_cnn); scripts and generative experiments call this before pointing the evaluator at it.
  """
  config = configs.get_config(preset)
  config.data.data_dir = data_dir
  checkpointer = checkpoint.Checkpointer(workdir)
  finished = checkpointer.latest_step() == config.train.steps
  checkpointer.close()
  if not finished:
    train_and_evaluate(Classify(config, devices.make_mesh()), workdir)
  return workdir


if __name__ == '__main__':
  cli.run(Classify)
