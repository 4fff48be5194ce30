"""StyleGAN2 with and without adaptive discriminator augmentation (ADA) on offline images.

    python -m experiments.stylegan2 --config=experiments/configs/stylegan2.py:shapes_limited_ada \
        --workdir=runs/stylegan2_ada

Papers (networks and losses in `jaxpapers/gans/stylegan2.py`, augmentation in `jaxpapers/gans/ada.py`):
  * StyleGAN2 (Karras et al. 2019, arXiv:1912.04958): the non-saturating logistic loss, lazy R1 on
    reals every `r1_interval` rounds (weight gamma / 2 times the interval), optional lazy path-length
    regularisation (`pl_weight`, every `pl_interval` rounds), an EMA of G, w_avg tracked for truncation.
  * ADA (Karras et al. 2020, arXiv:2006.06676): with `ada.enabled`, every image D sees (reals and fakes,
    in D's and G's updates, and the reals of R1) is augmented with probability p; after each round
    p += sign(r_t - target) * B / speed, r_t = E[sign(D(x_real))] on the round's reals (the paper
    averages r_t over 4 minibatches and adjusts every 4; here every round, the same speed per image).

The state is a `GameState`: players 'generator' (with the w_avg statistics as model state and an EMA)
and 'discriminator'; buffers 'p' (the augmentation probability) and 'pl_mean' (path-length mean a).
One jitted step is one round: one D update, then one G update against the updated D. The lazy
regularisers are chosen on the host (`step_options`): the rounds with R1 or path length are compiled
steps of their own, not `lax.cond` branches, whose convolutions XLA:CPU runs far slower.

Departures: the small presets follow ADA's CIFAR-10 setup (2-layer mapping network, no path-length
regularisation, no style mixing, small gamma) scaled down for a CPU; see the config.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from experiments import gan as gan_experiment
from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.gans import ada, stylegan2
from jaxpapers.gans import gan as gan_losses
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import GameState, PlayerState


class StyleGAN2(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.data = pipeline.from_config(config.data)
    self.image_shape = self.data.example()['image'].shape
    self.generator = zoo.build_from_config(config.generator)
    self.discriminator = zoo.build_from_config(config.discriminator)
    self.z_dim = self.generator.z_dim
    self.generator_tx = optim.make_optimizer(config.optim.generator, config.train.steps)
    self.discriminator_tx = optim.make_optimizer(config.optim.discriminator, config.train.steps)
    gan_experiment.prepare_quality_classifiers(config)

  def init(self, rng):
    g_key, d_key = jax.random.split(rng)
    g_vars = dict(self.generator.init(g_key, jnp.zeros((1, self.z_dim))))
    d_vars = dict(self.discriminator.init(d_key, jnp.zeros((4, *self.image_shape))))
    g_params = g_vars.pop('params')
    return GameState.create(rng=rng, players={
        'generator': PlayerState.create(params=g_params, tx=self.generator_tx, model_state=g_vars,
                                        ema=self.config.ema_decay > 0),
        'discriminator': PlayerState.create(params=d_vars['params'], tx=self.discriminator_tx),
    }, buffers={'p': jnp.float32(self.config.ada.p_init), 'pl_mean': jnp.float32(0.0)})

  def _augment(self, key, images, p):
    if not self.config.ada.enabled:
      return images
    return ada.augment(key, images, p)

  def _discriminate(self, params, images, key, p):
    return self.discriminator.apply({'params': params}, self._augment(key, images, p))

  def _generate(self, params, model_state, z, key, update_w_avg=False):
    variables = {'params': params, **model_state}
    return self.generator.apply(variables, z, update_w_avg=update_w_avg, rngs={'noise': key},
                                mutable=['stats'])

  def step_options(self, step: int) -> dict[str, bool]:
    c = self.config.stylegan2
    return {'r1': step % c.r1_interval == 0,
            'path_length': c.pl_weight > 0 and step % c.pl_interval == 0}

  def train_step(self, state: GameState, batch, r1: bool = False, path_length: bool = False):
    c = self.config.stylegan2
    real = batch['image']
    b = real.shape[0]
    p = state.buffers['p']
    generator, player = state.players['generator'], state.players['discriminator']
    z = jax.random.normal(state.step_rng('z_d'), (b, self.z_dim))
    fake, _ = self._generate(generator.params, generator.model_state, z, state.step_rng('noise_d'))
    fake = jax.lax.stop_gradient(fake)
    aug_real, aug_fake = state.step_rng('aug_real'), state.step_rng('aug_fake')

    def d_loss_fn(params):
      real_logits = self._discriminate(params, real, aug_real, p)
      fake_logits = self._discriminate(params, fake, aug_fake, p)
      loss = gan_losses.discriminator_loss(real_logits, fake_logits)
      penalty = jnp.float32(0.0)
      if r1:
        penalty = stylegan2.r1_penalty(lambda x: self._discriminate(params, x, aug_real, p), real)
      total = loss + penalty * (c.r1_gamma / 2) * c.r1_interval
      return total, (real_logits, {'discriminator_loss': loss, 'r1': penalty,
                                   'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
                                   'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits))})

    (_, (real_logits, d_metrics)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(player.params)
    player = player.apply_gradients(self.discriminator_tx, grads)
    r_t = ada.overfitting_heuristic(real_logits)
    if self.config.ada.enabled:
      p = ada.adjust_p(p, r_t, b, self.config.ada.target, self.config.ada.speed_images)

    z = jax.random.normal(state.step_rng('z_g'), (b, self.z_dim))
    noise_key, aug_key, pl_key = (state.step_rng('noise_g'), state.step_rng('aug_g'),
                                  state.step_rng('pl'))
    pl_mean = state.buffers['pl_mean']

    def g_loss_fn(params):
      images, model_state = self._generate(params, generator.model_state, z, noise_key,
                                           update_w_avg=True)
      loss = gan_losses.non_saturating_generator_loss(
          self._discriminate(player.params, images, aug_key, p))
      penalty, new_mean = jnp.float32(0.0), pl_mean
      if path_length:
        variables = {'params': params, **generator.model_state}
        ws = self.generator.apply(variables, z[: max(b // 2, 1)], method='mapping_ws')
        def synthesize(ws):
          return self.generator.apply(variables, ws, method='synthesize', rngs={'noise': noise_key})
        penalty, new_mean, _ = stylegan2.path_length_penalty(synthesize, ws, pl_key, pl_mean)
      total = loss + penalty * c.pl_weight * c.pl_interval
      return total, (model_state, new_mean, loss)

    (_, (model_state, new_mean, g_loss)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        generator.params)
    ema_decay = self.config.ema_decay if generator.ema_params is not None else None
    generator = generator.apply_gradients(self.generator_tx, grads, model_state=dict(model_state),
                                          ema_decay=ema_decay)
    state = (state.replace_player('generator', generator).replace_player('discriminator', player)
             .replace_buffer('p', p).replace_buffer('pl_mean', new_mean).advance())
    return state, {'loss': g_loss, 'ada_p': p, 'r_t': r_t, **d_metrics}

  def eval_data(self):
    return None

  @functools.partial(jax.jit, static_argnums=(0, 3, 4))
  def _sample(self, state: GameState, key, num: int, ema: bool, truncation_psi: float = 1.0):
    generator = state.players['generator']
    params = generator.ema_params if ema else generator.params
    z = jax.random.normal(key, (num, self.z_dim))
    images = self.generator.apply({'params': params, **generator.model_state}, z, truncation_psi)
    return gan_experiment.to_unit_range(images)

  def evaluation_fns(self):
    fns = {'sample': lambda state, key, num: self._sample(state, key, num, False)}
    if self.config.ema_decay > 0:
      fns['sample_ema'] = lambda state, key, num: self._sample(state, key, num, True)
    return fns


if __name__ == '__main__':
  cli.run(StyleGAN2)
