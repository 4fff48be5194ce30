"""Configs of the games in `tests/train/game_experiment.py` (plain data: imports nothing of jaxpapers).

Presets:
  saddle  f(x, y; a) = |x|^2 / 2 + x.y - |y|^2 / 2 - x.a, x minimises, y maximises; the equilibrium
          is x = y = mean(a) / 2
  gan     a GAN-shaped state on 4x4 images: generator (Adam, EMA copy) and BatchNorm discriminator
          (Adam), two critic updates per round, an image pool and a queue of real features
"""

import ml_collections


def train(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(dict(
      steps=300, batch_size=16, log_every=100, eval_every=0, checkpoint_every=1000, max_to_keep=2))
  c.update(overrides)
  return c


def saddle() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.game = ml_collections.ConfigDict(dict(
      dim=4, updates='alternating',  # or 'simultaneous'
      n_critic=1,  # maximiser updates per round (alternating only); the batch holds n_critic * B
      minimiser_learning_rate=0.1, maximiser_learning_rate=0.1, maximiser_momentum=0.5))
  c.data = ml_collections.ConfigDict(dict(size=1024, mean=(1.0, -2.0, 0.5, 3.0), stddev=0.1))
  c.train = train()
  return c


def gan() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.game = ml_collections.ConfigDict(dict(
      z_dim=8, hidden=16, n_critic=2, pool_size=8, queue_size=32, feature_matching=0.1,
      ema_base=0.99, learning_rate=1e-3))
  c.data = ml_collections.ConfigDict(dict(size=256, stddev=0.1))
  c.train = train(steps=600, batch_size=16, checkpoint_every=100)
  return c


def get_config(preset=None) -> ml_collections.ConfigDict:
  table = {'saddle': saddle, 'gan': gan}
  if preset not in table:
    raise ValueError(f'unknown preset {preset!r}; valid presets: {", ".join(table)}')
  return table[preset]()
