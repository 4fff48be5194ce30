"""LRCN against a single-frame model on the moving-shapes clips (Donahue et al. 2014), via classify.

"Long-term Recurrent Convolutional Networks for Visual Recognition and Description", Donahue et
al. 2014, arXiv:1411.4389, section 4. Run with the generic classification experiment:

    python -m experiments.classify --config=experiments/configs/lrcn.py:lrcn --workdir=runs/lrcn

Presets: `lrcn` (per-frame CNN into an LSTM), `single_frame` (the same CNN per frame, predictions
averaged: the paper's baseline), `tiny` (a few steps, for tests).

Settings: the project's `moving_shapes` (6,000 training clips of 8 frames, label = direction of
motion; test 1,000); Adam 1e-3 with a cosine schedule, batch 32, 1,000 steps: a CPU budget (the
paper fine-tunes a pre-trained CaffeNet with SGD on UCF-101). No augmentation.
"""

import ml_collections

from experiments.configs import classify, select


def base(model: str = 'lrcn') -> ml_collections.ConfigDict:
  c = classify.base()
  c.model = ml_collections.ConfigDict(dict(name=f'{model}_moving_shapes'))
  c.data.update(name='moving_shapes', train_split='train', eval_split='test')
  c.data.augment.random_crop_padding = 0
  c.optim = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='cosine', warmup_steps=50, grad_clip_norm=5.0))
  c.train.update(steps=1000, batch_size=32, log_every=50, eval_every=250, checkpoint_every=500)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base('lrcn')
  c.model.hidden_size = 8
  c.data.name = 'moving_shapes_tiny'
  c.optim.warmup_steps = 2
  c.train.update(steps=4, batch_size=16, log_every=2, eval_every=4, checkpoint_every=4)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'lrcn': lambda: base('lrcn'), 'single_frame': lambda: base('single_frame'),
                         'tiny': tiny}, default='lrcn')
