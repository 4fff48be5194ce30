"""Image-to-image translation: pix2pix, CycleGAN and SPADE on offline images.

    python -m experiments.translate --config=experiments/configs/translate.py:pix2pix \
        --workdir=runs/pix2pix

Papers (networks and losses in `jaxpapers/translation/`, one file each):
  * pix2pix (Isola et al. 2016, arXiv:1611.07004), `translate.method=pix2pix`: G maps the one-hot
    label map x to an image, the conditional PatchGAN D sees (x, y) or (x, G(x)); D minimises half
    the cross-entropy, then G minimises -log D(x, G(x)) + 100 |y - G(x)|_1 against the updated D
    (the reference's order). `gan_weight=0` is the paper's "L1 alone" row: no D is trained.
  * SPADE (Park et al. 2019, arXiv:1903.07291), `method=spade`: the same paired game with the SPADE
    generator and its multi-scale discriminator (lists of per-scale outputs), the hinge loss, D's
    feature-matching loss (weight 10) and the VGG loss (`translate.vgg_weight`, 10; 0 for none) on
    the features of `config.perceptual`'s frozen loss network, loaded as the style-transfer and
    super-resolution experiments load theirs (`super_resolution.load_loss_network`; offline, the
    project's `vgg19_bn_mini` trained on the shapes images, trained on first use).
  * CycleGAN (Zhu et al. 2017, arXiv:1703.10593), `method=cyclegan`: players 'generators' (G: A -> B
    and F: B -> A, one optimiser, as the reference) and 'discriminators' (D_B and D_A); buffers
    'pool_a' and 'pool_b', the 50-image histories of generated A and B images. Each round first
    updates both generators (least-squares GAN + 10 cycle + 5 identity), then both discriminators
    on real images and images drawn through the pools from this round's fakes.

The state is a `GameState` (see `jaxpapers/train/state.py`); one jitted step is one round. As in the
pix2pix paper (sec. 3.3), generators run in training mode also at evaluation: batch statistics of
the evaluation batch and dropout (with a fixed key), and D's batch statistics move only in D's own
update (G's pass through D discards them).

Evaluation: eval_step gives the held-out L1 (paired) or the cycle error and the L1 to the known
true translation (shapes_domains' test pairs), all in [0, 1] pixel units. Functions for
evaluators: 'grid' (rows of inputs, outputs and targets for `sample_grid`), 'translate_labels'
(`label_to_image`) and 'translate' (`domain_transfer`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.gan import to_unit_range
from experiments.super_resolution import load_loss_network
from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.style import perceptual
from jaxpapers.train import cli, optim
from jaxpapers.train.buffers import ImagePool
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import GameState, PlayerState, apply_training
from jaxpapers.translation import cyclegan, pix2pix, spade

METHODS = ('pix2pix', 'spade', 'cyclegan')
EVAL_KEY = 0  # the dropout key of every evaluation
# Label-map colours of the grids: background black, then one colour per class.
PALETTE = np.array([[0, 0, 0], [230, 60, 60], [60, 180, 75], [70, 110, 240], [240, 220, 60],
                    [190, 80, 220], [245, 140, 40], [70, 220, 220]], np.float32) / 255.0


def _l1(x, y):
  """Mean absolute difference per example, in [0, 1] pixel units, of images in [-1, 1]."""
  return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3)) / 2.0


def _mean_logit(out):
  """D's mean output: over patches, then over scales for SPADE's list of per-scale outputs."""
  return jnp.mean(jnp.stack([jnp.mean(o) for o in jax.tree.leaves(out)]))


class Translate(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    t = config.translate
    if t.method not in METHODS:
      raise ConfigError(f'config.translate.method={t.method!r}; valid: {", ".join(METHODS)}')
    self.method = t.method
    self.paired = t.method != 'cyclegan'
    expected = 'label_to_image' if self.paired else 'unpaired'
    if config.data.preprocess != expected:
      raise ConfigError(f'method {t.method} reads config.data.preprocess={expected!r}, not '
                        f'{config.data.preprocess!r}')
    self.data = pipeline.from_config(config.data)
    example = self.data.example()
    self.image_shape = example['image' if self.paired else 'image_a'].shape
    self.generator = zoo.build_from_config(config.generator)
    self.discriminator = zoo.build_from_config(config.discriminator)
    if self.method == 'spade' and not isinstance(self.discriminator, spade.MultiscaleDiscriminator):
      raise ConfigError(f'method spade reads per-scale outputs of a spade.MultiscaleDiscriminator '
                        f'(num_scales=1 for one scale); {config.discriminator.name!r} is a '
                        f'{type(self.discriminator).__name__}')
    self.generator_tx = optim.make_optimizer(config.optim.generator, config.train.steps)
    self.discriminator_tx = optim.make_optimizer(config.optim.discriminator, config.train.steps)
    self.train_discriminator = not self.paired or t.gan_weight > 0
    self.vgg = None
    if self.method == 'spade' and t.vgg_weight > 0:
      model, self.vgg_variables = load_loss_network(config)
      self.vgg = perceptual.FeatureExtractor(model, tuple(spade.VGG_LAYER_WEIGHTS),
                                             config.perceptual.imagenet_inputs)

  # --- networks

  def _one_hot(self, segmentation):
    return jax.nn.one_hot(segmentation, self.config.translate.num_labels)

  def _discriminate(self, params, model_state, condition, images, key, return_features=False):
    inputs = images if condition is None else jnp.concatenate([condition, images], axis=-1)
    return apply_training(self.discriminator, params, model_state, inputs, rngs={'dropout': key},
                          return_features=return_features)

  def init(self, rng):
    g_key, d_key, drop_key = jax.random.split(rng, 3)
    h, w, c = self.image_shape
    if self.paired:
      labels = jnp.zeros((1, h, w, self.config.translate.num_labels))
      g_vars = dict(self.generator.init({'params': g_key, 'dropout': drop_key}, labels,
                                        train=False))
      d_vars = dict(self.discriminator.init(d_key, jnp.zeros((1, h, w, labels.shape[-1] + c)),
                                            train=False))
      g_params, d_params = g_vars.pop('params'), d_vars.pop('params')
      return GameState.create(rng=rng, players={
          'generator': PlayerState.create(params=g_params, tx=self.generator_tx, model_state=g_vars),
          'discriminator': PlayerState.create(params=d_params, tx=self.discriminator_tx,
                                              model_state=d_vars)})
    image = jnp.zeros((1, h, w, c))

    def params_of(model, key, name):
      variables = dict(model.init(key, image, train=False))
      if set(variables) != {'params'}:
        raise ConfigError(f'CycleGAN keeps no model state; {name} has {sorted(variables)}')
      return variables['params']

    ga, gb, da, db = jax.random.split(g_key, 4)
    generators = {'ab': params_of(self.generator, ga, 'the generator'),
                  'ba': params_of(self.generator, gb, 'the generator')}
    discriminators = {'a': params_of(self.discriminator, da, 'the discriminator'),
                      'b': params_of(self.discriminator, db, 'the discriminator')}
    pool = ImagePool.create(self.config.translate.pool_size, self.image_shape)
    return GameState.create(rng=rng, players={
        'generators': PlayerState.create(params=generators, tx=self.generator_tx),
        'discriminators': PlayerState.create(params=discriminators, tx=self.discriminator_tx)},
        buffers={'pool_a': pool, 'pool_b': pool})

  # --- paired: pix2pix and SPADE

  def _discriminator_loss(self, real_out, fake_out):
    if self.method == 'spade':
      return spade.hinge_discriminator_loss(real_out, fake_out)
    if self.method == 'cyclegan':
      return cyclegan.lsgan_discriminator_loss(real_out, fake_out)
    return pix2pix.discriminator_loss(real_out, fake_out)

  def _paired_step(self, state: GameState, batch):
    t = self.config.translate
    labels, real = self._one_hot(batch['segmentation']), batch['image']
    generator, critic = state.players['generator'], state.players['discriminator']
    g_key, d_key = state.step_rng('dropout'), state.step_rng('discriminator')
    metrics = {}
    if self.train_discriminator:
      fake, _ = apply_training(self.generator, generator.params, generator.model_state, labels,
                               rngs={'dropout': g_key})
      fake = jax.lax.stop_gradient(fake)

      def d_loss_fn(params):
        real_out, model_state = self._discriminate(params, critic.model_state, labels, real, d_key)
        fake_out, model_state = self._discriminate(params, model_state, labels, fake, d_key)
        loss = self._discriminator_loss(real_out, fake_out)
        return loss, (model_state, {'discriminator_loss': loss, 'd_real': _mean_logit(real_out),
                                    'd_fake': _mean_logit(fake_out)})

      (_, (model_state, metrics)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
          critic.params)
      critic = critic.apply_gradients(self.discriminator_tx, grads, model_state=model_state)
      state = state.replace_player('discriminator', critic)

    def g_loss_fn(params):
      fake, model_state = apply_training(self.generator, params, generator.model_state, labels,
                                         rngs={'dropout': g_key})
      l1 = jnp.mean(jnp.abs(real - fake))
      parts = {'l1': l1}
      loss = t.l1_weight * l1
      if self.train_discriminator:
        # D's updated statistics are dropped: they move in its own update only.
        (fake_out, fake_features), _ = self._discriminate(
            critic.params, critic.model_state, labels, fake, d_key, return_features=True)
        if self.method == 'spade':
          (_, real_features), _ = self._discriminate(
              critic.params, critic.model_state, labels, real, d_key, return_features=True)
          parts['gan'] = spade.hinge_generator_loss(fake_out)
          parts['feature_matching'] = spade.feature_matching_loss(real_features, fake_features)
          loss = loss + parts['gan'] + t.feature_matching_weight * parts['feature_matching']
        else:
          parts['gan'] = pix2pix.generator_loss(fake_out, fake, real, l1_weight=0.0)
          loss = loss + t.gan_weight * parts['gan']
      if self.vgg is not None:
        def phi(images):
          return self.vgg(self.vgg_variables, to_unit_range(images))
        parts['vgg'] = spade.vgg_loss(phi(fake), phi(real))
        loss = loss + t.vgg_weight * parts['vgg']
      return loss, (model_state, parts)

    (loss, (model_state, parts)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        generator.params)
    generator = generator.apply_gradients(self.generator_tx, grads, model_state=model_state)
    state = state.replace_player('generator', generator).advance()
    return state, {'loss': loss, **{f'g_{k}': v for k, v in parts.items()}, **metrics}

  # --- unpaired: CycleGAN

  def _translate(self, params, images, direction):
    return self.generator.apply({'params': params[direction]}, images)

  def _critic(self, params, domain, images):
    return self.discriminator.apply({'params': params[domain]}, images)

  def _cycle_step(self, state: GameState, batch):
    t = self.config.translate
    a, b = batch['image_a'], batch['image_b']
    generators, critics = state.players['generators'], state.players['discriminators']

    def g_loss_fn(params):
      fake_b, fake_a = self._translate(params, a, 'ab'), self._translate(params, b, 'ba')
      adversarial = (cyclegan.lsgan_generator_loss(self._critic(critics.params, 'b', fake_b))
                     + cyclegan.lsgan_generator_loss(self._critic(critics.params, 'a', fake_a)))
      cycle = cyclegan.cycle_loss(a, self._translate(params, fake_b, 'ba'), b,
                                  self._translate(params, fake_a, 'ab'))
      loss = adversarial + t.cycle_weight * cycle
      parts = {'gan': adversarial, 'cycle': cycle}
      if t.identity_weight > 0:
        parts['identity'] = cyclegan.identity_loss(a, self._translate(params, a, 'ba'), b,
                                                   self._translate(params, b, 'ab'))
        loss = loss + t.identity_weight * t.cycle_weight * parts['identity']
      return loss, ((fake_a, fake_b), parts)

    (loss, ((fake_a, fake_b), parts)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        generators.params)
    generators = generators.apply_gradients(self.generator_tx, grads)
    pool_a, pooled_a = state.buffers['pool_a'].query(jax.lax.stop_gradient(fake_a),
                                                     state.step_rng('pool_a'))
    pool_b, pooled_b = state.buffers['pool_b'].query(jax.lax.stop_gradient(fake_b),
                                                     state.step_rng('pool_b'))

    def d_loss_fn(params):
      loss_b = self._discriminator_loss(self._critic(params, 'b', b), self._critic(params, 'b',
                                                                                   pooled_b))
      loss_a = self._discriminator_loss(self._critic(params, 'a', a), self._critic(params, 'a',
                                                                                   pooled_a))
      return loss_a + loss_b

    d_loss, grads = jax.value_and_grad(d_loss_fn)(critics.params)
    critics = critics.apply_gradients(self.discriminator_tx, grads)
    state = (state.replace_player('generators', generators).replace_player('discriminators', critics)
             .replace_buffer('pool_a', pool_a).replace_buffer('pool_b', pool_b).advance())
    return state, {'loss': loss, **{f'g_{k}': v for k, v in parts.items()},
                   'discriminator_loss': d_loss}

  def train_step(self, state: GameState, batch):
    return self._paired_step(state, batch) if self.paired else self._cycle_step(state, batch)

  # --- evaluation

  def _generate_from_labels(self, state: GameState, segmentation):
    """Images in [-1, 1] from class maps [N, H, W], as at training time (see the docstring)."""
    generator = state.players['generator']
    images, _ = apply_training(self.generator, generator.params, generator.model_state,
                               self._one_hot(segmentation),
                               rngs={'dropout': jax.random.PRNGKey(EVAL_KEY)})
    return images

  def eval_step(self, state: GameState, batch):
    mask = batch['mask']
    if self.paired:
      fake = self._generate_from_labels(state, batch['segmentation'])
      return {'l1': jnp.sum(_l1(fake, batch['image']) * mask), 'count': jnp.sum(mask)}
    params = state.players['generators'].params
    a, b = batch['image_a'], batch['image_b']
    fake_b, fake_a = self._translate(params, a, 'ab'), self._translate(params, b, 'ba')
    cycle = (_l1(self._translate(params, fake_b, 'ba'), a)
             + _l1(self._translate(params, fake_a, 'ab'), b))
    # shapes_domains' test pairs are true translations of each other.
    return {'cycle_error': jnp.sum(cycle * mask), 'l1_ab': jnp.sum(_l1(fake_b, b) * mask),
            'l1_ba': jnp.sum(_l1(fake_a, a) * mask), 'count': jnp.sum(mask)}

  @functools.partial(jax.jit, static_argnums=0)
  def translate_labels(self, state: GameState, segmentation):
    """Class maps [N, H, W] -> images [N, H, W, 3] in [0, 1] (for `label_to_image`)."""
    return to_unit_range(self._generate_from_labels(state, segmentation))

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def translate(self, state: GameState, images, direction: str):
    """Images [N, H, W, 3] in [0, 1] -> their translation 'ab' or 'ba' in [0, 1]."""
    out = self._translate(state.players['generators'].params, images * 2.0 - 1.0, direction)
    return to_unit_range(out)

  def grid(self, state: GameState, key, num: int):
    """The first `num` held-out examples as rows: paired: label maps, outputs, targets; unpaired:
    A, G(A), true B, then B, F(B), true A."""
    del key  # The examples are fixed; dropout uses the evaluation key.
    examples = [self.data.eval[i] for i in range(num)]
    if self.data.preprocess:
      examples = [self.data.preprocess(ex) for ex in examples]
    stack = {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}
    if self.paired:
      segmentation = stack['segmentation']
      outputs = self.translate_labels(state, jnp.asarray(segmentation))
      rows = [PALETTE[segmentation], outputs, (stack['image'] + 1.0) / 2.0]
    else:
      a, b = (stack['image_a'] + 1.0) / 2.0, (stack['image_b'] + 1.0) / 2.0
      rows = [a, self.translate(state, jnp.asarray(a), 'ab'), b,
              b, self.translate(state, jnp.asarray(b), 'ba'), a]
    return np.concatenate([np.asarray(r) for r in rows])

  def evaluation_fns(self):
    fns = {'grid': self.grid}
    if self.paired:
      fns['translate_labels'] = self.translate_labels
    else:
      fns['translate'] = self.translate
    return fns


if __name__ == '__main__':
  cli.run(Translate)
