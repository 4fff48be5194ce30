"""Knowledge distillation: a student classifier trained on a fixed teacher's soft targets.

    python -m experiments.distill --config=experiments/configs/distill.py:digits_teacher \
        --workdir=runs/distill/teacher
    python -m experiments.distill --config=experiments/configs/distill.py:digits_distilled \
        --workdir=runs/distill/distilled

The classification experiment (`experiments.classify.Classify`: data, model, augmentation,
evaluation) with `jaxpapers.distill.hinton.distillation_loss` in place of the cross-entropy when
`config.teacher.workdir` names a trained teacher. The teacher is the zoo preset
`config.teacher.model` with the variables of that run's checkpoint at `config.teacher.step` (0: the
last), as Cho & Hariharan's early-stopped teachers (ESKD) are earlier checkpoints of the same run.
Its logits on the training set (the transfer set, as in Hinton et al.'s MNIST experiment: the
training images without the teacher's jitter) are computed once, when the experiment starts, and
travel with each batch as `teacher_logits`; the student is therefore trained without
augmentation (`config.data.augment` off). With no teacher it is plain supervised training: the
teacher's own run and the "student alone" baseline.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.classify import Classify
from jaxpapers import zoo
from jaxpapers.distill import eskd, hinton
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli


class Distill(Classify):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    t = config.teacher
    if not t.workdir:
      return
    if config.data.augment.random_crop_padding or config.data.augment.random_flip:
      raise ConfigError('the teacher\'s logits are computed once on the un-augmented transfer set: '
                        'set config.data.augment off for a distilled student')
    variables = eskd.load_teacher(t.workdir, t.step)
    teacher = zoo.build(t.model)
    apply = jax.jit(lambda v, x: teacher.apply(v, x, train=False))
    images = np.stack([ex['image'] for ex in self.data.train])
    logits = np.concatenate([np.asarray(apply(variables, images[i:i + 512]))
                             for i in range(0, len(images), 512)])
    self.teacher_train_accuracy = float(np.mean(
        logits.argmax(-1) == np.array([ex['label'] for ex in self.data.train])))
    train = [{**ex, 'teacher_logits': row.astype(np.float32)}
             for ex, row in zip(self.data.train, logits)]
    self.data = type(self.data)(train=train, eval=self.data.eval, preprocess=self.data.preprocess,
                                info=self.data.info)

  def train_step(self, state, batch):
    if not self.config.teacher.workdir:
      return super().train_step(state, batch)
    d = self.config.distill

    def loss_fn(params):
      logits = self.model.apply({'params': params, **state.model_state}, batch['image'],
                                train=True, rngs={'dropout': state.step_rng('dropout')})
      loss, parts = hinton.distillation_loss(logits, batch['teacher_logits'], batch['label'],
                                             d.temperature, d.alpha)
      return loss, (logits, parts)

    (loss, (logits, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads)
    return state, {'loss': loss, **parts,
                   'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}


if __name__ == '__main__':
  cli.run(Distill)
