"""Generative adversarial networks, trained with `experiments/gan.py`.

Presets:
  gan_digits          Goodfellow et al. 2014: MLP generator, maxout discriminator, the
                      non-saturating generator loss, on the offline 8x8 digits
  gan_digits_minimax  the same with the minimax generator loss log(1 - D(G(z))) (section 3)
  cgan_digits         Mirza & Osindero 2014: both players conditioned on the digit's class
  wgan_gp_digits      Gulrajani et al. 2017, Algorithm 1: the GAN's generator, an MLP critic,
                      lambda 10, n_critic 5, Adam(1e-4, 0, 0.9)
  dcgan_shapes        Radford et al. 2015: the 32x32 DCGAN (`dcgan_32_*`, at ngf = ndf = 16 for
                      the CPU) on the 32x32 shapes images of the CLIP set, Adam(2e-4, 0.5)
  dcgan_64            the paper's 64x64 networks (`dcgan_64_*`, the reference code's counts) and
                      recipe (batch 128), for a GPU/TPU with a 64x64 RGB TFDS set (data.name)
  tiny                a few steps of small networks on the digits, for tests

Every preset keeps an EMA of the generator (decay 0.999; averaging of GAN generators, Yazici et
al. 2019, is common practice though none of the four papers uses it) and logs the quality of both
the generator the paper evaluates and its EMA.
"""

import ml_collections

from experiments.configs import select


def _adam(learning_rate, b1, b2):
  return dict(name='adam', learning_rate=learning_rate, b1=b1, b2=b2, schedule='constant',
              warmup_steps=0, grad_clip_norm=0.0)


def _quality(fn, classifier='digits_cnn', workdir='runs/digits_classifier', dataset='sklearn_digits',
             split='train', conditional=False):
  return dict(type='sample_quality', fn=fn, num_samples=1000, batch_size=500, seed=1,
              classifier_model=classifier, classifier_workdir=workdir, dataset=dataset, split=split,
              conditional=conditional)


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.generator = ml_collections.ConfigDict(dict(name='gan_digits_generator'))
  c.discriminator = ml_collections.ConfigDict(dict(name='gan_digits_discriminator'))
  c.gan = ml_collections.ConfigDict(dict(
      game='non_saturating',  # non_saturating | minimax (Goodfellow et al. sec. 3) | wgan_gp
      n_critic=1,  # discriminator updates per generator update; train.batch_size = n_critic * B
      gp_weight=10.0,  # lambda of WGAN-GP
      conditional=False,  # both players see the label (Mirza & Osindero)
  ))
  c.data = ml_collections.ConfigDict(dict(
      name='sklearn_digits', data_dir='', train_split='train', eval_split='test',
      preprocess='image_generation', in_memory=True))
  # The paper trains with SGD and momentum; Adam(2e-4, 0.5) (DCGAN's) is what GAN code uses now.
  c.optim = ml_collections.ConfigDict(dict(generator=_adam(2e-4, 0.5, 0.999),
                                           discriminator=_adam(2e-4, 0.5, 0.999)))
  c.ema_decay = 0.999  # 0: no EMA generator
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='sample_grid', fn='sample', num_images=100, seed=0, scale=4),
      quality=_quality('sample'),
      quality_ema=_quality('sample_ema'),
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=20_000, batch_size=64, log_every=500, eval_every=2000, checkpoint_every=5000,
      max_to_keep=2))
  return c


def gan_digits_minimax() -> ml_collections.ConfigDict:
  c = base()
  c.gan.game = 'minimax'
  return c


def cgan_digits() -> ml_collections.ConfigDict:
  c = base()
  c.generator.name = 'cgan_digits_generator'
  c.discriminator.name = 'cgan_digits_discriminator'
  c.gan.conditional = True
  # Row c of the grid is class c; quality adds the classifier's accuracy on the drawn classes.
  c.evals.samples.num_rows = 10
  c.evals.quality = _quality('sample_labelled', conditional=True)
  c.evals.quality_ema = _quality('sample_ema_labelled', conditional=True)
  return c


def wgan_gp_digits() -> ml_collections.ConfigDict:
  c = base()
  c.discriminator.name = 'wgan_gp_digits_critic'
  c.gan.update(game='wgan_gp', n_critic=5)
  c.optim.generator = _adam(1e-4, 0.0, 0.9)
  c.optim.discriminator = _adam(1e-4, 0.0, 0.9)
  c.train.batch_size = 5 * 64  # five critic sub-batches of 64 per round
  c.train.update(steps=15_000, eval_every=1500)  # rounds: 75,000 critic updates
  return c


def dcgan_shapes() -> ml_collections.ConfigDict:
  c = base()
  # ngf = ndf = 16 rather than the reference's 64: a sixteenth of the compute, so that 800 steps
  # fit a shared 2-core CPU (`dcgan_64` keeps the paper's widths; features=64 restores them here).
  c.generator = ml_collections.ConfigDict(dict(name='dcgan_32_generator', features=16))
  c.discriminator = ml_collections.ConfigDict(dict(name='dcgan_32_discriminator', features=16))
  c.data.update(name='shapes_captions', eval_split='validation')
  shapes = dict(classifier='shapes_cnn', workdir='runs/shapes_classifier', dataset='shapes_captions',
                split='train[:5000]')
  c.evals.samples.update(num_images=64, scale=2)
  c.evals.quality = _quality('sample', **shapes)
  c.evals.quality_ema = _quality('sample_ema', **shapes)
  # On CPU, oneDNN's convolutions: a DCGAN round at the reference widths 1.06x XLA's defaults.
  c.train.update(steps=800, log_every=50, eval_every=200, checkpoint_every=200,
                 cpu_kernels='onednn')
  return c


def dcgan_64() -> ml_collections.ConfigDict:
  c = dcgan_shapes()
  c.generator = ml_collections.ConfigDict(dict(name='dcgan_64_generator'))
  c.discriminator = ml_collections.ConfigDict(dict(name='dcgan_64_discriminator'))
  # Any 64x64 RGB set prepared in TFDS (the paper's LSUN bedrooms and faces are not in TFDS at 64x64).
  c.data.update(name='imagenet_resized/64x64', eval_split='validation', in_memory=False)
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='sample_grid', fn='sample', num_images=64, seed=0, scale=1)))
  c.train.update(steps=50_000, batch_size=128, log_every=500, eval_every=5000,
                 checkpoint_every=5000)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base()
  c.generator = ml_collections.ConfigDict(dict(name='gan_digits_generator', hidden=(16,), z_dim=8))
  c.discriminator = ml_collections.ConfigDict(dict(name='gan_digits_discriminator', hidden=(16,),
                                                   pieces=2))
  c.ema_decay = 0.9
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='sample_grid', fn='sample', num_images=8, seed=0, scale=2)))
  c.train.update(steps=4, batch_size=16, log_every=2, eval_every=4, checkpoint_every=4)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'gan_digits': base, 'gan_digits_minimax': gan_digits_minimax,
                          'cgan_digits': cgan_digits, 'wgan_gp_digits': wgan_gp_digits,
                          'dcgan_shapes': dcgan_shapes, 'dcgan_64': dcgan_64, 'tiny': tiny},
                 default='gan_digits')
