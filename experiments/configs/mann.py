"""One-shot 5-way episodes with the MANN (Santoro et al. 2016, arXiv:1605.06065, section 4.1).

Presets: `glyphs` (the default: the paper's model on the offline glyphs, Omniglot's stand-in),
`digits` (the same on 16 rotated-digit classes, sized for minutes on a CPU), `tiny` and
`tiny_glyphs` (a few steps of a very small model, for tests).

Settings, and where they come from:
  - Data: 5 classes x 10 instances per episode (Table 1's setting), classes from `font_glyphs`
    (899 background characters, 20x20 as the paper's Omniglot images; test episodes from the 727
    characters of the evaluation alphabets) or the offline digits times four rotations
    (`jaxpapers.data.one_shot_episodes`; Omniglot is not available offline).
  - Model: `mann` (LSTM of 200, 128 slots of 40, 4 read heads, gamma 0.95).
  - Optimiser: the paper uses RMSprop (learning rate 1e-4) for about 100,000 episodes of 16; a CPU
    budget needs faster progress, so Adam 1e-3, batch 16, gradient norm clipped at 10.
"""

import ml_collections

from experiments.configs import select


def digits() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name='mann'))
  c.data = ml_collections.ConfigDict(dict(name='digits', data_dir='', seed=0, num_classes=5,
                                          per_class=10, train_episodes=1_000_000,
                                          eval_episodes=512))
  c.optim = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='constant', warmup_steps=0, grad_clip_norm=10.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=3000, batch_size=16, log_every=100, eval_every=500, checkpoint_every=500,
      max_to_keep=2))
  return c


def glyphs() -> ml_collections.ConfigDict:
  c = digits()
  c.data.name = 'font_glyphs'
  # About the paper's 100,000 episodes (6,250 updates of 16).
  c.train.update(steps=6000, eval_every=1000, checkpoint_every=1000)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = digits()
  c.model.name = 'mann_tiny'
  c.data.update(per_class=3, train_episodes=64, eval_episodes=16)
  c.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4)
  return c


def tiny_glyphs() -> ml_collections.ConfigDict:
  c = tiny()
  c.data.name = 'font_glyphs_tiny'
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'glyphs': glyphs, 'digits': digits, 'tiny': tiny,
                         'tiny_glyphs': tiny_glyphs}, default='glyphs')
