"""Denoising diffusion probabilistic models: training and sample grids.

    python -m experiments.ddpm --config=experiments/configs/ddpm.py:digits \
        --workdir=runs/ddpm_digits

Papers:
  * Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239):
    Algorithm 1 (draw t uniformly, x_t = q_sample(x_0, t, eps), minimise L_simple, eq. 14), the
    linear schedule, the U-Net, Adam with warm-up and gradient clipping, an exponential moving
    average of the parameters for sampling, and Algorithm 2 (ancestral sampling) for the grids.
  * Improved Denoising Diffusion Probabilistic Models (Nichol & Dhariwal 2021, arXiv:2102.09672):
    `diffusion.learn_sigma=True` trains the learned variances of eq. 15 with L_hybrid (eq. 16,
    lambda = 0.001), usually with the cosine schedule (eq. 17); sampling then uses those variances.

Each evaluation reports the held-out L_simple (and L_vlb term for L_hybrid) of the current and of
the EMA parameters at fixed steps and noise (steps evenly spread over [0, T), the same noise every
time), so successive evaluations are comparable; `after_eval` saves a grid of samples drawn from
the EMA parameters with the one-`lax.scan` ancestral sampler to `<workdir>/samples/step_N.png`.

Departures: timesteps are drawn uniformly also for L_hybrid (as the paper does for L_hybrid; its
importance sampling, `process.sample_timesteps`, is for L_vlb alone). The digits presets shrink the
U-Net, the training length and the EMA horizon to fit a CPU (see the config's comments).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxpapers.data import augment, pipeline
from jaxpapers.diffusion import process, samplers, schedules, unet
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, devices, metrics, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState


def make_betas(config) -> np.ndarray:
  """The training schedule of `config.diffusion` (float64)."""
  d = config.diffusion
  if d.schedule == 'linear':
    return schedules.linear_betas(d.num_timesteps, d.beta_start, d.beta_end)
  if d.schedule == 'cosine':
    return schedules.cosine_betas(d.num_timesteps)
  raise ConfigError(f'config.diffusion.schedule={d.schedule!r}; valid: linear, cosine')


def preprocess(example: dict[str, Any]) -> dict[str, np.ndarray]:
  """uint8 images -> float32 in [-1, 1]; every other feature is dropped."""
  return {'image': np.asarray(example['image'], np.float32) / 127.5 - 1.0}


def to_unit_range(images) -> np.ndarray:
  """Model-space images in [-1, 1] -> the 256 levels of an 8-bit image, as floats in [0, 1]."""
  return np.round((np.clip(np.asarray(images), -1.0, 1.0) + 1.0) * 127.5) / 255.0


class DDPM(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    d = config.diffusion
    self.betas = make_betas(config)
    self.coefs = process.diffusion_coefficients(self.betas)
    self.variance = config.sample.variance
    if (self.variance == 'learned_range') != d.learn_sigma:
      raise ConfigError(f'config.sample.variance={self.variance!r} with '
                        f'config.diffusion.learn_sigma={d.learn_sigma}: learned_range is the '
                        'variance of exactly the models that learn sigma')
    if self.variance not in process.VARIANCES:
      raise ConfigError(f'config.sample.variance={self.variance!r}; valid: '
                        f'{", ".join(process.VARIANCES)}')
    self.model = unet.UNet(**config.model, learn_sigma=d.learn_sigma)
    data = config.data
    self._train_source, self._eval_source = (
        pipeline.load_source(data.name, split, data.data_dir or None)
        for split in (data.train_split, data.eval_split))
    self.image_shape = preprocess(self._eval_source[0])['image'].shape
    self._preprocess = preprocess
    if data.in_memory:
      self._train_source, self._eval_source = (
          pipeline.in_memory(s, preprocess) for s in (self._train_source, self._eval_source))
      self._preprocess = None
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self._grid_sampler = None

  def init(self, rng):
    params_rng, state_rng = jax.random.split(rng)
    params = self.model.init({'params': params_rng}, jnp.zeros((1, *self.image_shape)),
                             jnp.zeros((1,), jnp.int32), train=False)['params']
    return TrainState.create(params=params, tx=self.tx, rng=state_rng,
                             ema_decay=self.config.ema_decay)

  def eps_fn(self, params) -> Callable[[jax.Array, jax.Array], Any]:
    """The network as the samplers take it: (x_t, t) -> eps, or (eps, v) when it learns sigma."""
    def fn(x, t):
      out = self.model.apply({'params': params}, x, t, train=False)
      return tuple(jnp.split(out, 2, axis=-1)) if self.config.diffusion.learn_sigma else out
    return fn

  def _loss_terms(self, x0, x_t, t, noise, out) -> dict[str, jax.Array]:
    """Per-example losses: L_simple, or L_hybrid with its two parts."""
    if self.config.diffusion.learn_sigma:
      eps, v = jnp.split(out, 2, axis=-1)
      return process.hybrid_loss(self.coefs, x0, x_t, t, noise, eps, v,
                                 self.config.diffusion.hybrid_lambda)
    return {'loss': process.l_simple(noise, out)}

  def train_step(self, state: TrainState, batch):
    x0 = batch['image']
    if self.config.data.random_flip:
      x0 = augment.random_flip_left_right(x0, state.step_rng('flip'))
    t = jax.random.randint(state.step_rng('t'), x0.shape[:1], 0,
                           self.config.diffusion.num_timesteps)
    noise = jax.random.normal(state.step_rng('noise'), x0.shape)
    x_t = process.q_sample(self.coefs, x0, t, noise)

    def loss_fn(params):
      out = self.model.apply({'params': params}, x_t, t, train=True,
                             rngs={'dropout': state.step_rng('dropout')})
      terms = self._loss_terms(x0, x_t, t, noise, out)
      return jnp.mean(terms['loss']), terms

    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(self.tx, grads), {k: jnp.mean(v) for k, v in terms.items()}

  def eval_step(self, state: TrainState, batch):
    x0, mask = batch['image'], batch['mask']
    size, num_timesteps = x0.shape[0], self.config.diffusion.num_timesteps
    # Row i of every batch sees step (i + 1/2) T / B and the same noise: a fixed quadrature over t.
    t = ((jnp.arange(size) + 0.5) * num_timesteps / size).astype(jnp.int32)
    noise = jax.random.normal(jax.random.PRNGKey(self.config.seed), x0.shape)
    x_t = process.q_sample(self.coefs, x0, t, noise)
    sums = {'count': jnp.sum(mask)}
    for prefix, params in (('', state.params), ('ema_', state.ema_params)):
      out = self.model.apply({'params': params}, x_t, t, train=False)
      terms = self._loss_terms(x0, x_t, t, noise, out)
      sums.update({prefix + name: jnp.sum(value * mask) for name, value in terms.items()})
    return sums

  def sampler(self, num_images: int, steps: int = 0) -> Callable[[Any, jax.Array], jax.Array]:
    """A jitted (params, key) -> images [-1, 1] drawing `num_images` with the ancestral sampler.

    steps: 0 for all T steps (DDPM Algorithm 2), S for the S evenly strided steps.
    """
    num_timesteps = self.config.diffusion.num_timesteps
    timesteps = samplers.evenly_spaced_timesteps(num_timesteps, steps) if steps else None
    schedule = samplers.respaced_schedule(self.betas, timesteps)
    clip = self.config.sample.clip_denoised

    def sample(params, key):
      noise_key, step_key = jax.random.split(key)
      x_T = jax.random.normal(noise_key, (num_images, *self.image_shape))
      if num_images % self.mesh.size == 0:  # Otherwise every device draws the whole batch.
        x_T = jax.lax.with_sharding_constraint(x_T, devices.data_sharded(self.mesh))
      return samplers.ancestral_sample(self.eps_fn(params), schedule, x_T, step_key,
                                       variance=self.variance, clip_denoised=clip)

    return jax.jit(sample, compiler_options=devices.compiler_options())

  def after_eval(self, state: TrainState, step: int, workdir: str) -> dict[str, float]:
    s = self.config.sample
    if self._grid_sampler is None:
      self._grid_sampler = self.sampler(s.num_images, s.steps)
    images = self._grid_sampler(state.ema_params, jax.random.PRNGKey(s.seed))
    images = multihost_utils.process_allgather(images, tiled=True)
    if jax.process_index() == 0:
      metrics.save_image_grid(to_unit_range(images), f'{workdir}/samples/step_{step}.png',
                              scale=s.grid_scale)
    return {}

  def train_data(self):
    return pipeline.train_batches(self._train_source,
                                  global_batch_size=self.config.train.batch_size,
                                  seed=self.config.seed, preprocess=self._preprocess)

  def eval_data(self):
    return pipeline.eval_batches(self._eval_source, global_batch_size=self.config.train.batch_size,
                                 preprocess=self._preprocess)


if __name__ == '__main__':
  cli.run(DDPM)
