"""StyleGAN2 (+ ADA), trained with `experiments/stylegan2.py`.

Presets:
  shapes_limited      `stylegan2_32_*` at half width (channel_base 1024, channel_max 64: G 329,651,
                      D 288,993 parameters) on 300 of the 32x32 shapes images (train[:300]), no ADA
  shapes_limited_ada  the same with ADA (target 0.6; p's speed scaled to the short run)
  tiny                a few steps of an 8x8 model on the digits, for tests

The limited-data pair follows ADA's CIFAR-10 recipe scaled down for a shared CPU: a 2-layer mapping
network, gamma 0.01, no path-length regularisation, no style mixing, Adam(0.0025, 0, 0.99), batch 32,
the G EMA; quality is the Frechet distance of the shapes classifier's features against 5,000 training
images (not only the 300 seen), so memorising the subset does not score well. Half width because the
full `stylegan2_32_*` (1.05M / 1.15M parameters) ran at 0.08-0.10 steps/s per run on one core each, two
hours for the pair; a quarter of the FLOPs fits the pair in a session.
"""

import ml_collections

from experiments.configs import select


def _adam(learning_rate):
  return dict(name='adam', learning_rate=learning_rate, b1=0.0, b2=0.99, eps=1e-8,
              schedule='constant', warmup_steps=0, grad_clip_norm=0.0)


def _quality(fn):
  return dict(type='sample_quality', fn=fn, num_samples=1000, batch_size=250, seed=1,
              classifier_model='shapes_cnn', classifier_workdir='runs/shapes_classifier',
              dataset='shapes_captions', split='train[:5000]', conditional=False)


def shapes_limited() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  half_width = dict(channel_base=1024, channel_max=64)
  c.generator = ml_collections.ConfigDict(dict(name='stylegan2_32_generator', **half_width))
  c.discriminator = ml_collections.ConfigDict(dict(name='stylegan2_32_discriminator', **half_width))
  c.stylegan2 = ml_collections.ConfigDict(dict(r1_gamma=0.01, r1_interval=16, pl_weight=0.0,
                                               pl_interval=4))
  c.ada = ml_collections.ConfigDict(dict(enabled=False, p_init=0.0, target=0.6, speed_images=20_000))
  c.data = ml_collections.ConfigDict(dict(
      name='shapes_captions', data_dir='', train_split='train[:300]', eval_split='validation',
      preprocess='image_generation', in_memory=True))
  c.optim = ml_collections.ConfigDict(dict(generator=_adam(0.0025), discriminator=_adam(0.0025)))
  c.ema_decay = 0.99
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='sample_grid', fn='sample_ema', num_images=64, seed=0, scale=2),
      quality_ema=_quality('sample_ema'),
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=600, batch_size=32, log_every=50, eval_every=100, checkpoint_every=100, max_to_keep=1))
  return c


def shapes_limited_ada() -> ml_collections.ConfigDict:
  c = shapes_limited()
  c.ada.enabled = True
  return c


def tiny() -> ml_collections.ConfigDict:
  c = shapes_limited_ada()
  small = dict(z_dim=8, w_dim=8, channel_base=32, channel_max=8)
  c.generator = ml_collections.ConfigDict(dict(name='stylegan2_16_generator', resolution=8, channels=1,
                                               **small))
  c.discriminator = ml_collections.ConfigDict(dict(name='stylegan2_16_discriminator', channel_base=32,
                                                   channel_max=8))
  c.stylegan2.update(r1_interval=2, pl_weight=2.0, pl_interval=2)
  c.data.update(name='sklearn_digits', train_split='train', eval_split='test')
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='sample_grid', fn='sample_ema', num_images=8, seed=0, scale=2)))
  c.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'shapes_limited': shapes_limited, 'shapes_limited_ada': shapes_limited_ada,
                          'tiny': tiny}, default='shapes_limited_ada')
