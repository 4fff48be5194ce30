"""Supervised image classification with any zoo classifier.

Presets:
  digits_cnn  the demo: LeNet-style convnet on the offline digits set (>= 95% test accuracy in ~1 min on CPU)
  digits_mlp  a one-hidden-layer MLP on the same data
  tiny        a few steps of the MLP, for tests
"""

import ml_collections

from jaxpapers.train.cli import presets


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = 'digits_cnn'  # any zoo classifier taking (images, train=...) -> logits
  c.data = ml_collections.ConfigDict(dict(
      name='sklearn_digits', data_dir='', train_split='train', eval_split='test',
      in_memory=True,  # decode the whole dataset once (for small datasets)
      random_crop_padding=1,  # random crop of the zero-padded image: translation by up to this (0 = off)
      random_flip=False,  # horizontal flips (not for digits: a mirrored 2 is no digit)
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=3e-3, schedule='cosine', warmup_steps=50, weight_decay=1e-4,
      grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500, max_to_keep=2))
  return c


def digits_mlp() -> ml_collections.ConfigDict:
  c = base()
  c.model = 'digits_mlp'
  c.data.random_crop_padding = 0
  return c


def tiny() -> ml_collections.ConfigDict:
  c = digits_mlp()
  c.optim.warmup_steps = 2
  c.train.update(steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return presets(preset, {'digits_cnn': base, 'digits_mlp': digits_mlp, 'tiny': tiny},
                 default='digits_cnn')()
