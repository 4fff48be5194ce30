"""Knowledge distillation on the offline 8x8 digits, in the shape of Hinton et al.'s MNIST
experiment (arXiv:1503.02531, section 3), and Cho & Hariharan's early-stopped teacher (ESKD,
arXiv:1910.01348).

Presets (run in this order, each in its own workdir; WORKSPACE.md has the commands):
  digits_teacher    64-1200-1200-10 MLP, dropout 0.2 on the input and 0.5 on hidden units, inputs
                    jittered by up to 1 pixel (the paper: up to 2 of 28); keeps every 150-step
                    checkpoint, the early-stopped teachers
  digits_student    64-32-32-10 MLP, no regularisation, no jitter: the student alone
  digits_distilled  the same student on the teacher's soft targets at T = 20 (the paper's MNIST
                    temperature), alpha 0.9 on the T^2-scaled soft term, from the final teacher
                    (runs/distill/teacher)
  digits_eskd       the same, from the teacher's checkpoint at step 300 of 1,500 (20% of its
                    training, fixed before any run: not chosen on the test set)
  tiny, teacher_tiny  a few steps, for tests

Departures: the student is 64-32-32-10 rather than the paper's 784-800-800-10 (on 1,437 training
images of 64 pixels an 800-unit net alone is already about as good as the teacher, leaving no gap
to close); AdamW with a cosine schedule instead of SGD; 1,500 steps of batch 64.
"""

import ml_collections

from experiments.configs import classify, select


def base() -> ml_collections.ConfigDict:
  c = classify.base()
  c.model.name = 'digits_student'
  c.data.augment.random_crop_padding = 0
  c.teacher = ml_collections.ConfigDict(dict(workdir='', model='digits_teacher', step=0))
  c.distill = ml_collections.ConfigDict(dict(temperature=20.0, alpha=0.9))
  c.optim.weight_decay = 0.0
  c.train.update(steps=1500, batch_size=64, eval_every=150, checkpoint_every=1500, max_to_keep=1)
  return c


def teacher() -> ml_collections.ConfigDict:
  c = base()
  c.model.name = 'digits_teacher'
  c.data.augment.random_crop_padding = 1
  c.optim.weight_decay = 1e-4
  c.train.update(checkpoint_every=150, max_to_keep=10)
  return c


def distilled(step: int = 0) -> ml_collections.ConfigDict:
  c = base()
  c.teacher.update(workdir='runs/distill/teacher', step=step)
  return c


def _tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.optim.warmup_steps = 2
  c.train.update(steps=8, batch_size=16, log_every=4, eval_every=4, checkpoint_every=4,
                 max_to_keep=2)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'digits_teacher': teacher, 'digits_student': base,
                         'digits_distilled': distilled, 'digits_eskd': lambda: distilled(300),
                         'teacher_tiny': lambda: _tiny(teacher()),
                         'tiny': lambda: _tiny(distilled(4))},
                default='digits_distilled')
