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
time), so successive evaluations are comparable. The config's evaluators use the experiment's
`sample` function (the EMA parameters through the one-`lax.scan` ancestral sampler, images in
[0, 1]): the presets save a sample grid (`<workdir>/samples/step_N.png`), and a `sample_quality`
entry adds the Frechet distance and classifier score of a fixed classifier.

Departures: timesteps are drawn uniformly also for L_hybrid (as the paper does for L_hybrid; its
importance sampling, `process.sample_timesteps`, is for L_vlb alone). The digits presets shrink the
U-Net, the training length and the EMA horizon to fit a CPU (see the config's comments).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.data import augment, pipeline
from jaxpapers.diffusion import process, samplers, schedules
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, devices, optim
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


def to_unit_range(images) -> jax.Array:
  """Model-space images in [-1, 1] -> the 256 levels of an 8-bit image, as floats in [0, 1]."""
  return jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5) / 255.0


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
    self.model = zoo.build_from_config(config.model, learn_sigma=d.learn_sigma)
    self.data = pipeline.from_config(config.data)
    self.image_shape = self.data.example()['image'].shape
    self._augment = augment.from_config(config.data.augment)
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self._samplers = {}

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
    x0 = self._augment(batch['image'], state.step_rng('augment'))
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

    steps: 0 for all T steps (DDPM Algorithm 2), S for the S evenly strided steps. Built once per
    (num_images, steps), so each evaluation reuses the compiled chain.
    """
    if (num_images, steps) not in self._samplers:
      self._samplers[num_images, steps] = self._build_sampler(num_images, steps)
    return self._samplers[num_images, steps]

  def _build_sampler(self, num_images: int, steps: int) -> Callable[[Any, jax.Array], jax.Array]:
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

    # The run's CPU kernels (the loop compiles its steps with them too): 'onednn' in the presets.
    return jax.jit(sample, compiler_options=devices.run_compiler_options(self.config.train))

  def evaluation_fns(self):
    def sample(state, key, num_images):
      """Images in [0, 1] from the EMA parameters, with `config.sample`'s sampler."""
      images = self.sampler(num_images, self.config.sample.steps)(state.ema_params, key)
      return to_unit_range(images)
    return {'sample': sample}


if __name__ == '__main__':
  cli.run(DDPM)
