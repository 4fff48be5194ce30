"""Generative adversarial networks: GAN, DCGAN, Conditional GAN and WGAN-GP on offline images.

    python -m experiments.gan --config=experiments/configs/gan.py:gan_digits --workdir=runs/gan_digits

Papers (the networks and losses are in `jaxpapers/gans/`, one file each):
  * Generative Adversarial Nets (Goodfellow et al. 2014, arXiv:1406.2661): `gan.game=minimax` or
    `non_saturating` (section 3), discriminator binary cross-entropy, one D update per G update.
  * DCGAN (Radford et al. 2015, arXiv:1511.06434): the same game with the convolutional networks
    of `dcgan.py`, Adam(2e-4, beta1 0.5).
  * Conditional GANs (Mirza & Osindero 2014, arXiv:1411.1784): `gan.conditional=True`; both
    players get the label, D's real pairs are the data's (image, label), its fake pairs and G's
    labels are drawn uniformly.
  * WGAN-GP (Gulrajani et al. 2017, arXiv:1704.00028): `gan.game=wgan_gp`, Algorithm 1 with
    n_critic critic updates per generator update and the gradient penalty on interpolates.

The state is a `GameState` of two players: 'generator' (with an EMA copy of its parameters when
`ema_decay > 0`) and 'discriminator' (the critic for WGAN-GP), each with its own optimiser and its
BatchNorm statistics (if any) as model state. One jitted train step is one round of the game (see
`jaxpapers/train/state.py`): the global batch of `train.batch_size = n_critic * B` real examples is
split into n_critic sub-batches, `unrolled_scan` runs the discriminator's updates over them, then the
generator takes one update against the updated discriminator on B fresh latents. Each player's
BatchNorm statistics move in its own update only: the generator's pass through D uses D's batch
statistics (training mode, as the reference DCGAN) but discards the updated running averages.
D sees real and fake images in separate batches, as the reference, so its batch statistics never
mix the two.

Evaluation functions: 'sample' (the generator; for a conditional model row c of a grid is class
c), 'sample_ema' (its EMA), and 'sample_labelled' / 'sample_ema_labelled' ((images, labels) for
`sample_quality` with `conditional=True`). Generators with BatchNorm sample with the statistics of
the sample batch, as the reference DCGAN code does (its generator is never put in eval mode);
running averages of an EMA generator would not match its averaged parameters.
The presets' evaluators log the Frechet distance, classifier score and classes found of a fixed
classifier at every evaluation, so quality over training is a curve (scripts/gan_table.py).
The classifiers are trained on first use (`experiments.classify.trained_classifier`).

Departures: see each paper file and the config's comments.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from experiments import classify
from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.gans import gan as gan_losses
from jaxpapers.gans import wgan_gp
from jaxpapers.train import checkpoint, cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import GameState, PlayerState, apply_training, sub_batches, unrolled_scan

GAMES = ('non_saturating', 'minimax', 'wgan_gp')


def to_unit_range(images: jax.Array) -> jax.Array:
  """Generator images in [-1, 1] -> [0, 1] (the evaluators' range)."""
  return jnp.clip((images + 1.0) / 2.0, 0.0, 1.0)


def prepare_quality_classifiers(config) -> None:
  """Trains each `sample_quality` classifier of `config.evals` whose workdir holds no run yet, with
  the classify preset named as its zoo model (digits_cnn, shapes_cnn)."""
  for name, entry in (config.get('evals') or {}).items():
    if entry.get('type') == 'sample_quality':
      if not entry.get('classifier_workdir'):
        raise ConfigError(f'config.evals.{name}.classifier_workdir is empty')
      checkpointer = checkpoint.Checkpointer(entry.classifier_workdir)
      trained = checkpointer.latest_step() is not None
      checkpointer.close()
      if not trained:
        classify.trained_classifier(entry.classifier_workdir,
                                    entry.get('classifier_model', 'digits_cnn'),
                                    config.data.data_dir)


class GAN(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    g = config.gan
    if g.game not in GAMES:
      raise ConfigError(f'config.gan.game={g.game!r}; valid: {", ".join(GAMES)}')
    if g.n_critic < 1 or config.train.batch_size % g.n_critic:
      raise ConfigError(f'config.train.batch_size={config.train.batch_size} must be n_critic '
                        f'({g.n_critic}) times the per-update batch')
    self.data = pipeline.from_config(config.data)
    example = self.data.example()
    self.image_shape = example['image'].shape
    self.num_classes = 0
    if g.conditional:
      if 'label' not in example:
        raise ConfigError(f'config.gan.conditional needs labels; {config.data.name} gives none')
      self.num_classes = self.data.info.features['label'].num_classes
    self.generator = zoo.build_from_config(config.generator)
    self.discriminator = zoo.build_from_config(config.discriminator)
    self.z_dim = self.generator.z_dim
    self.generator_tx = optim.make_optimizer(config.optim.generator, config.train.steps)
    self.discriminator_tx = optim.make_optimizer(config.optim.discriminator, config.train.steps)
    prepare_quality_classifiers(self.config)

  # The networks, called with labels only when the game is conditional.

  def _labels(self, labels):
    return (labels,) if self.config.gan.conditional else ()

  def generate(self, params, model_state, z, labels):
    """(images in [-1, 1], the generator's updated model state), in training mode: batch
    statistics also when sampling (see the module docstring)."""
    return apply_training(self.generator, params, model_state, z, *self._labels(labels))

  def discriminate(self, params, model_state, images, labels, rng):
    """(D's logits or critic scores in training mode, D's updated model state)."""
    return apply_training(self.discriminator, params, model_state, images, *self._labels(labels),
                          rngs={'dropout': rng})

  def init(self, rng):
    g_key, d_key, drop_key = jax.random.split(rng, 3)
    labels = self._labels(jnp.zeros((1,), jnp.int32))
    g_vars = dict(self.generator.init({'params': g_key}, jnp.zeros((1, self.z_dim)), *labels,
                                      train=False))
    d_vars = dict(self.discriminator.init({'params': d_key, 'dropout': drop_key},
                                          jnp.zeros((1, *self.image_shape)), *labels, train=False))
    g_params, d_params = g_vars.pop('params'), d_vars.pop('params')
    return GameState.create(rng=rng, players={
        'generator': PlayerState.create(params=g_params, tx=self.generator_tx, model_state=g_vars,
                                        ema=self.config.ema_decay > 0),
        'discriminator': PlayerState.create(params=d_params, tx=self.discriminator_tx,
                                            model_state=d_vars),
    })

  def discriminator_update(self, state: GameState, inputs):
    """One update of D (or the critic) on a real sub-batch against fresh fakes."""
    real, labels, index = inputs
    z_key, eps_key, drop_key = jax.random.split(
        jax.random.fold_in(state.step_rng('discriminator'), index), 3)
    generator, player = state.players['generator'], state.players['discriminator']
    z = jax.random.normal(z_key, (real.shape[0], self.z_dim))
    fake, _ = self.generate(generator.params, generator.model_state, z, labels)
    fake = jax.lax.stop_gradient(fake)
    real_key, fake_key, gp_key = jax.random.split(drop_key, 3)

    def loss_fn(params):
      real_out, model_state = self.discriminate(params, player.model_state, real, labels, real_key)
      fake_out, model_state = self.discriminate(params, model_state, fake, labels, fake_key)
      if self.config.gan.game == 'wgan_gp':
        def critic(x):
          return self.discriminate(params, player.model_state, x, labels, gp_key)[0]
        penalty = wgan_gp.gradient_penalty(critic, real, fake, eps_key)
        loss = wgan_gp.critic_loss(real_out, fake_out, penalty, self.config.gan.gp_weight)
        metrics = {'wasserstein_estimate': jnp.mean(real_out) - jnp.mean(fake_out),
                   'gradient_penalty': penalty}
      else:
        loss = gan_losses.discriminator_loss(real_out, fake_out)
        metrics = {'d_real': jnp.mean(jax.nn.sigmoid(real_out)),
                   'd_fake': jnp.mean(jax.nn.sigmoid(fake_out))}
      return loss, (model_state, {'discriminator_loss': loss, **metrics})

    (_, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(player.params)
    player = player.apply_gradients(self.discriminator_tx, grads, model_state=model_state)
    return state.replace_player('discriminator', player), metrics

  def generator_loss(self, logits):
    game = self.config.gan.game
    if game == 'wgan_gp':
      return wgan_gp.generator_loss(logits)
    if game == 'minimax':
      return gan_losses.minimax_generator_loss(logits)
    return gan_losses.non_saturating_generator_loss(logits)

  def train_step(self, state: GameState, batch):
    n = self.config.gan.n_critic
    images = batch['image']
    labels = batch['label'] if self.config.gan.conditional else jnp.zeros(images.shape[:1], jnp.int32)
    state, d_metrics = unrolled_scan(
        self.discriminator_update, state,
        (sub_batches(images, n), sub_batches(labels, n), jnp.arange(n)))

    generator, critic = state.players['generator'], state.players['discriminator']
    size = images.shape[0] // n
    z = jax.random.normal(state.step_rng('z'), (size, self.z_dim))
    fake_labels = jax.random.randint(state.step_rng('labels'), (size,), 0, max(self.num_classes, 1))

    def loss_fn(params):
      fake, model_state = self.generate(params, generator.model_state, z, fake_labels)
      # D's updated statistics are dropped: they move in its own update only.
      logits, _ = self.discriminate(critic.params, critic.model_state, fake, fake_labels,
                                    state.step_rng('dropout'))
      return self.generator_loss(logits), model_state

    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(generator.params)
    ema_decay = self.config.ema_decay if generator.ema_params is not None else None
    generator = generator.apply_gradients(self.generator_tx, grads, model_state=model_state,
                                          ema_decay=ema_decay)
    state = state.replace_player('generator', generator).advance()
    return state, {'loss': loss, **{k: jnp.mean(v) for k, v in d_metrics.items()}}

  def eval_data(self):
    return None  # Quality is measured by the evaluators, from samples.

  @functools.partial(jax.jit, static_argnums=(0, 3, 4))
  def _sample(self, state: GameState, key, num: int, ema: bool):
    generator = state.players['generator']
    params = generator.ema_params if ema else generator.params
    z_key, _ = jax.random.split(key)
    z = jax.random.normal(z_key, (num, self.z_dim))
    # Balanced classes in blocks: in a grid of num_classes rows, row c is class c.
    labels = (jnp.arange(num) * max(self.num_classes, 1)) // num
    images, _ = self.generate(params, generator.model_state, z, labels)
    return to_unit_range(images), labels

  def evaluation_fns(self):
    fns = {'sample': lambda state, key, num: self._sample(state, key, num, False)[0],
           'sample_labelled': lambda state, key, num: self._sample(state, key, num, False)}
    if self.config.ema_decay > 0:
      fns.update({'sample_ema': lambda state, key, num: self._sample(state, key, num, True)[0],
                  'sample_ema_labelled': lambda state, key, num: self._sample(state, key, num, True)})
    return fns


if __name__ == '__main__':
  cli.run(GAN)
