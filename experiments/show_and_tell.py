"""Show and Tell on the captioned shapes: caption BLEU against a nearest-neighbour baseline.

"Show and Tell: A Neural Image Caption Generator", Vinyals, Toshev, Bengio, Erhan 2014,
arXiv:1411.4555 (model and beam search: `jaxpapers.captioning.show_and_tell`).

    python -m experiments.show_and_tell --config=experiments/configs/show_and_tell.py:shapes \
        --workdir=runs/show_and_tell

Trains the CNN encoder and LSTM decoder on (image, caption) pairs of `shapes_captions` with the
summed word log-likelihood (Eq. 13), and evaluates the teacher-forced loss and word accuracy on
the validation split; the `caption_bleu` evaluator captions validation images by beam search
and scores them with sacrebleu against every template caption of their attributes, beside the
nearest-neighbour baseline (`jaxpapers.evaluators.captioning`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.captioning import show_and_tell as sat
from jaxpapers.data import pipeline, shapes_captions
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState


def caption_rows(source, tokenizer, context: int) -> dict[str, np.ndarray]:
  rows = [source[i] for i in range(len(source))]
  texts = [r['caption'].decode() if isinstance(r['caption'], bytes) else str(r['caption'])
           for r in rows]
  return {'image': np.stack([np.asarray(r['image'], np.float32) / 255.0 for r in rows]),
          'tokens': tokenizer(texts, context)}


class ShowAndTellExperiment(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.data
    self.tokenizer = shapes_captions.tokenizer()
    self.model = zoo.build_from_config(config.model, vocab_size=self.tokenizer.vocab_size)
    load = lambda split: caption_rows(pipeline.load_source(d.name, split, d.data_dir or None),
                                      self.tokenizer, d.context)
    train, held_out = load('train'), load(d.eval_split)
    self.data = pipeline.Splits(train=pipeline.ArrayRows(train),
                                eval=pipeline.ArrayRows(held_out))
    self._shapes = (train['image'].shape[1:], d.context)
    self.tx = optim.make_optimizer(config.optim, config.train.steps)

  def init(self, rng):
    image_shape, context = self._shapes
    variables = self.model.init(rng, jnp.zeros((1, *image_shape)),
                                jnp.zeros((1, context), jnp.int32))
    params = variables.pop('params')
    return TrainState.create(params=params, tx=self.tx, model_state=dict(variables), rng=rng)

  @staticmethod
  def _word_losses(logits, batch):
    targets = batch['tokens'][:, 1:]
    words = (targets != 0).astype(jnp.float32)  # Padding after the end word is not a word.
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets) * words
    correct = (jnp.argmax(logits, -1) == targets) * words
    return losses, correct, words

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      logits, model_state = self.model.apply(
          {'params': params, **state.model_state}, batch['image'], batch['tokens'], train=True,
          rngs={'dropout': state.step_rng('dropout')}, mutable=list(state.model_state))
      losses, correct, words = self._word_losses(logits, batch)
      return jnp.sum(losses) / jnp.sum(words), (jnp.sum(correct) / jnp.sum(words), model_state)

    (loss, (accuracy, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    return (state.apply_gradients(self.tx, grads, model_state=dict(model_state)),
            {'loss': loss, 'word_accuracy': accuracy})

  def eval_step(self, state: TrainState, batch):
    logits = self.model.apply({'params': state.params, **state.model_state}, batch['image'],
                              batch['tokens'])
    losses, correct, words = self._word_losses(logits, batch)
    mask = batch['mask']
    # Per-caption means, averaged over captions by the loop.
    per = lambda x: jnp.sum(jnp.sum(x, 1) / jnp.sum(words, 1) * mask)
    return {'count': jnp.sum(mask), 'loss': per(losses), 'word_accuracy': per(correct)}

  def evaluation_fns(self):
    c = self.config
    return {'caption': lambda state, images: sat.caption(
        self.model, {'params': state.params, **state.model_state}, images,
        start=self.tokenizer.sot, end=self.tokenizer.eot,
        beam_size=c.beam_size, max_len=c.data.context - 1)}


if __name__ == '__main__':
  cli.run(ShowAndTellExperiment)
