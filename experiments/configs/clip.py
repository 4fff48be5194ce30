"""CLIP contrastive pre-training on the offline captioned-shapes set, with zero-shot transfer.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford et al. 2021,
arXiv:2103.00020).

Presets:
  shapes_vit     the CPU run: `clip_shapes_vit`, a small ViT image tower (4 layers, width 128, 8x8
                 patches of the 32x32 images) and a small text transformer (4 layers, width 128,
                 16-token context)
  shapes_resnet  the same with a small modified ResNet image tower (`clip_shapes_resnet`: stem,
                 anti-aliased strides, attention pooling; 1-1-1-1 blocks, width 16)
  tiny           a few steps of a tiny ViT CLIP on shapes_captions_tiny, for tests
  tiny_resnet    the same with a tiny ResNet tower

Settings and where they come from (section 2.5 of the paper, its Tables 19-20):
  - AdamW with decoupled weight decay on every weight but gains and biases, beta2 = 0.98,
    eps = 1e-6 (the ViT setting of Table 19), weight decay 0.2, cosine schedule with warm-up.
  - The temperature: learned, initialised to 0.07, logits scaled by at most 100.
  - Departures for a 2-core CPU: batch 128 (paper: 32,768), a few thousand steps (paper: 32 epochs
    of 400M pairs), warm-up 200 steps (paper 2,000), learning rate 1e-3 (paper 5e-4 at 32k batch),
    tiny towers, 32x32 images, 16-token context (the presets use 77) and the word-level tokenizer
    of `jaxpapers.data.shapes_captions` (paper: BPE with 49,152 merges).
"""

import ml_collections

from experiments.configs import select


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name='clip_shapes_vit'))  # towers of the zoo
  c.data = ml_collections.ConfigDict(dict(
      name='shapes_captions',  # shapes_captions or shapes_captions_tiny (the tokenizer is theirs)
      data_dir='',
  ))
  # jit: the loss of the whole sharded batch under jax.jit; shard_map: all-gather per device.
  c.loss_impl = 'shard_map'
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=1e-3, schedule='cosine', warmup_steps=200, weight_decay=0.2,
      b1=0.9, b2=0.98, eps=1e-6, grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=3000, batch_size=128, log_every=50, eval_every=1000, checkpoint_every=500,
      max_to_keep=2))
  # The evaluators read the run's dataset (references: overriding config.data follows here).
  data = dict(dataset=c.data.get_ref('name'), data_dir=c.data.get_ref('data_dir'))
  splits = dict(seen='validation', unseen='test')
  probe = dict(type='linear_probe', train_split='train', train_size=5000,  # probe-train images
               eval_splits=splits, targets=('shape', 'colour'), **data)
  c.evals = ml_collections.ConfigDict(dict(
      zs=dict(type='zero_shot', task='shapes_captions', splits=splits, **data),
      probe=dict(probe, fn='image_features'),
      random_probe=dict(probe, fn='image_features_at_init', cache_features=True),
      curves=dict(type='training_curves', metrics=('loss', 'temperature'),
                  log_scale=('temperature',)),
  ))
  return c


def shapes_resnet() -> ml_collections.ConfigDict:
  c = base()
  c.model.name = 'clip_shapes_resnet'
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base()
  c.model.name = 'clip_shapes_tiny'
  c.data.name = 'shapes_captions_tiny'
  for probe in (c.evals.probe, c.evals.random_probe):
    probe.train_size = 128
  c.optim.update(learning_rate=3e-3, warmup_steps=2)
  c.train.update(steps=12, batch_size=32, log_every=4, eval_every=12, checkpoint_every=12)
  return c


def tiny_resnet() -> ml_collections.ConfigDict:
  c = tiny()
  c.model.name = 'clip_shapes_tiny_resnet'
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'shapes_vit': base, 'shapes_resnet': shapes_resnet, 'tiny': tiny,
                          'tiny_resnet': tiny_resnet}, default='shapes_vit')
