"""Semantic segmentation: any zoo segmenter on a dataset with per-pixel labels (the scenes set).

    python -m experiments.segment --config=experiments/configs/segment.py:unet --workdir=runs/unet

The model maps images to {'out': logits [N, H, W, C]} (and 'aux' for FCN's auxiliary head, weighted
by `config.aux_loss_weight`); the loss is the mean per-pixel softmax cross-entropy (FCN sec. 3: "a
per-pixel multinomial logistic loss"). The eval step reports loss and pixel accuracy; the
`segmentation` evaluator the mean IoU of `segment` (argmax classes) on the test split.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState


def pixel_loss(outputs: dict[str, jax.Array], labels: jax.Array, aux_weight: float) -> jax.Array:
  """Mean per-pixel cross-entropy of each example [N] (of 'out', plus aux_weight times 'aux')."""
  loss = optax.softmax_cross_entropy_with_integer_labels(outputs['out'], labels).mean((1, 2))
  if 'aux' in outputs:
    loss = loss + aux_weight * optax.softmax_cross_entropy_with_integer_labels(
        outputs['aux'], labels).mean((1, 2))
  return loss


class Segment(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.data = pipeline.from_config(config.data)
    self.model = zoo.build_from_config(config.model)
    self._image_shape = self.data.example()['image'].shape
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    return TrainState.init_model(self.model, jnp.zeros((1, *self._image_shape)), tx=self.tx,
                                 rng=rng)

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      outputs, model_state = self.model.apply(
          {'params': params, **state.model_state}, batch['image'], train=True,
          rngs={'dropout': state.step_rng('dropout')}, mutable=list(state.model_state))
      loss = pixel_loss(outputs, batch['segmentation'], self.config.aux_loss_weight).mean()
      return loss, (outputs['out'], model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['segmentation'])
    state = state.apply_gradients(self.tx, grads, model_state=dict(model_state))
    return state, {'loss': loss, 'pixel_accuracy': accuracy}

  def outputs(self, state: TrainState, images):
    return self.model.apply({'params': state.params, **state.model_state}, images, train=False)

  def eval_step(self, state: TrainState, batch):
    outputs = self.outputs(state, batch['image'])
    mask = batch['mask']
    correct = (jnp.argmax(outputs['out'], -1) == batch['segmentation']).mean((1, 2))
    return {'loss': jnp.sum(pixel_loss(outputs, batch['segmentation'], 0.0) * mask),
            'pixel_accuracy': jnp.sum(correct * mask), 'count': jnp.sum(mask)}

  def segment(self, state: TrainState, images):
    return jnp.argmax(self.outputs(state, images)['out'], -1)

  def evaluation_fns(self):
    return {'segment': self.segment}


if __name__ == '__main__':
  cli.run(Segment)
