"""Denoising diffusion: DDPM (Ho et al. 2020, arXiv:2006.11239) and Improved DDPM (Nichol & Dhariwal
2021, arXiv:2102.09672), trained with `experiments/ddpm.py`.

Presets:
  digits         the CPU reproduction: a 1.0M-parameter U-Net on the offline 8x8 digits, L_simple,
                 linear schedule, 4,000 steps of 128 (about 30 min on 2 CPU cores)
  digits_hybrid  the same data and network with Improved DDPM's learned variances (L_hybrid) and
                 cosine schedule
  cifar10        DDPM's CIFAR-10 run (sec. 4, appendix B): the 35.7M `ddpm_cifar10` U-Net, batch
                 128, Adam 2e-4 with 5,000 warm-up steps, gradient clipping at 1, EMA 0.9999,
                 random flips, 800k steps; for a GPU/TPU with CIFAR-10 prepared in TFDS
  iddpm_cifar10  Improved DDPM's CIFAR-10 L_hybrid run (the openai/improved-diffusion README flags):
                 the 52.5M `iddpm_cifar10` U-Net, T = 4000 steps of the cosine schedule, Adam
                 1e-4, 500k steps
  tiny           a few steps of a tiny U-Net on the digits, for tests
"""

import ml_collections

from experiments.configs import select


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A zoo U-Net (`jaxpapers/diffusion/unet.py`); `learn_sigma` comes from `diffusion.learn_sigma`.
  # The digits are used at their native 8x8: upsampling adds no information for the model to learn
  # and would cost 4x the compute per doubling, and the fixed classifier that scores the samples
  # (jaxpapers/evaluators/sample_quality.py) reads 8x8 images.
  c.model = ml_collections.ConfigDict(dict(name='ddpm_digits'))
  c.diffusion = ml_collections.ConfigDict(dict(
      num_timesteps=1000,
      schedule='linear',  # linear (DDPM: beta_start..beta_end) | cosine (Improved DDPM eq. 17)
      beta_start=1e-4, beta_end=0.02,
      learn_sigma=False,  # True: Improved DDPM's learned variances trained with L_hybrid
      hybrid_lambda=0.001,  # lambda of L_hybrid = L_simple + lambda L_vlb (Improved DDPM sec. 3.1)
  ))
  c.data = ml_collections.ConfigDict(dict(
      name='sklearn_digits', data_dir='', train_split='train', eval_split='test',
      preprocess='image_generation',  # images in [-1, 1]
      in_memory=True,  # decode the whole dataset once (for small datasets)
      augment=dict(random_flip=False),  # flips for CIFAR-10; not digits: a mirrored 2 is no digit
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='cosine', warmup_steps=200, grad_clip_norm=1.0))
  # The paper's 0.9999 averages over ~10k steps, longer than the whole CPU run; 0.999 leaves the
  # initial weights a share of e^-4 after 4,000 steps.
  c.ema_decay = 0.999
  # The sampler of the evaluators' `sample` function: ancestral sampling on the EMA parameters.
  c.sample = ml_collections.ConfigDict(dict(
      steps=0,  # 0: all num_timesteps steps; S: the evenly strided S steps (Improved DDPM sec. 4)
      variance='fixed_large',  # fixed_large (beta, DDPM's CIFAR-10 choice) | fixed_small (beta~)
      clip_denoised=True,  # clip the x_0 estimate to [-1, 1] at every step, as DDPM's sampler does
  ))
  # A sample grid after each evaluation, from the same noise each time (so grids show progress).
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='sample_grid', fn='sample', num_images=100, seed=0, scale=4)))
  # cpu_kernels: on CPU, oneDNN's convolutions for the train steps and the sampler (digits U-Net:
  # train step 1.11x, sampling 1.20x XLA's defaults; WORKSPACE.md, issue 16).
  c.train = ml_collections.ConfigDict(dict(
      steps=4000, batch_size=128, log_every=100, eval_every=2000, checkpoint_every=500,
      max_to_keep=2, cpu_kernels='onednn'))
  return c


def digits_hybrid() -> ml_collections.ConfigDict:
  c = base()
  c.diffusion.update(schedule='cosine', learn_sigma=True)
  c.sample.variance = 'learned_range'
  return c


def cifar10() -> ml_collections.ConfigDict:
  c = base()
  c.model.name = 'ddpm_cifar10'  # 35,746,307 parameters
  c.data.update(name='cifar10', in_memory=False)
  c.data.augment.random_flip = True
  c.optim.update(learning_rate=2e-4, schedule='constant', warmup_steps=5000, grad_clip_norm=1.0)
  c.ema_decay = 0.9999
  c.evals.samples.update(num_images=64, scale=2)
  c.train.update(steps=800_000, batch_size=128, log_every=1000, eval_every=50_000,
                 checkpoint_every=10_000, max_to_keep=3)
  return c


def iddpm_cifar10() -> ml_collections.ConfigDict:
  c = cifar10()
  c.model.name = 'iddpm_cifar10'  # 52,546,438 parameters
  c.diffusion.update(num_timesteps=4000, schedule='cosine', learn_sigma=True)
  c.optim.update(learning_rate=1e-4, warmup_steps=0, grad_clip_norm=0.0)
  c.sample.variance = 'learned_range'
  c.train.steps = 500_000
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base()
  c.model.name = 'ddpm_tiny'  # few layers, so it compiles quickly
  c.optim.warmup_steps = 2
  c.ema_decay = 0.9
  c.sample.steps = 5
  c.evals.samples.update(num_images=8, scale=2)
  c.train.update(steps=6, batch_size=16, log_every=3, eval_every=6, checkpoint_every=6)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'digits': base, 'digits_hybrid': digits_hybrid, 'cifar10': cifar10,
                          'iddpm_cifar10': iddpm_cifar10, 'tiny': tiny}, default='digits')
