"""x4 single-image super-resolution: SRResNet-MSE and SRGAN (Ledig et al. 2016, arXiv:1609.04802).

    python -m experiments.super_resolution --config=experiments/configs/super_resolution.py:srresnet_mse \
        --workdir=runs/srresnet_mse
    python -m experiments.super_resolution --config=experiments/configs/super_resolution.py:srgan \
        --workdir=runs/srgan

The networks and losses are in `jaxpapers/style/srgan.py`; HR/LR pairs come from the
`super_resolution_x4` preprocess (PIL bicubic x4 downsampling, `jaxpapers/data/style_images.py`).
The state is a `GameState` (`jaxpapers/train/state.py`), as in experiments/gan.py: player
'generator' (SRResNet, its BatchNorm statistics as model state) and, when
`sr.adversarial_weight > 0`, player 'discriminator'. One jitted step is one round: D's update on the
real HR batch against the generator's current outputs, then the generator's update against the
updated D (the alternating pattern of gan.py, with its losses from `jaxpapers/gans/gan.py`).
The generator's loss is `sr.content` ('mse': pixel MSE in [-1, 1], SRResNet-MSE; 'vgg': the VGG
loss on `sr.vgg_layer` of the loss network, eq. 5, with feature maps scaled by
`sr.vgg_scale`) plus `adversarial_weight` times -log D(G(I_LR)) (eq. 6; 1e-3 for SRGAN, eq. 3).
SRGAN starts its generator from a trained SRResNet-MSE run (`sr.generator_init`, a workdir), as
sec. 3.2 does; that run's parameters are read once when the experiment is built.

Evaluation on `data.eval_split`: PSNR and SSIM on Y, 4-pixel border removed
(`jaxpapers/evaluators/image_quality.py`), of the network's output and of bicubic upsampling
(`jax.image.resize`, Keys' cubic with a = -0.5 as PIL's), and, through `sample_quality`, the
Frechet distance of the outputs ('super_resolve'), of bicubic ('bicubic') and of the true HR
images ('high_res', the floor) to the reference split, with the fixed `shapes_cnn` classifier
(the evaluator's `num_samples` must equal its `batch_size`: these functions return the first
`num` eval images whatever the key). `sr_grid`: rows of LR (nearest-neighbour), bicubic, output, HR.

Departures: 32x32 HR shapes images from 8x8 LR inputs instead of 96x96 ImageNet crops, a loss
network trained on those shapes (`vgg19_bn_mini`, see jaxpapers/style/perceptual.py) instead of
ImageNet VGG-19, and thousands of updates rather than the paper's 10^6 (SRResNet) and 2 x 10^5
(SRGAN, whose learning rate drops to 1e-5 halfway: `optim.*.schedule='step'` reproduces that).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments import classify
from experiments.gan import prepare_quality_classifiers, to_unit_range
from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.evaluators import image_quality
from jaxpapers.gans import gan as gan_losses
from jaxpapers.style import perceptual
from jaxpapers.train import checkpoint, cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import GameState, PlayerState, apply_training

CONTENT_LOSSES = ('mse', 'vgg')


def bicubic_upsample(low_res: jax.Array, shape) -> jax.Array:
  return jnp.clip(jax.image.resize(low_res, shape, 'bicubic'), 0.0, 1.0)


def load_loss_network(config):
  """(the zoo VGG of `config.perceptual`, its frozen variables), training the offline one first
  when its workdir holds no run (`perceptual.train_preset`, a classify preset)."""
  c = config.perceptual
  if c.get('train_preset'):
    classify.trained_classifier(c.init_from, c.train_preset, config.data.data_dir)
  variables = jax.tree.map(jnp.asarray, perceptual.load_loss_network_variables(c.init_from))
  return zoo.build_from_config(c.model).clone(pooling=c.get('pooling', 'max')), variables


class SuperResolution(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    s = config.sr
    if s.content not in CONTENT_LOSSES:
      raise ConfigError(f'config.sr.content={s.content!r}; valid: {", ".join(CONTENT_LOSSES)}')
    self.data = pipeline.from_config(config.data)
    example = self.data.example()
    self.hr_shape, self.lr_shape = example['image'].shape, example['low_res'].shape
    self.generator = zoo.build_from_config(config.generator)
    self.generator_tx = optim.make_optimizer(config.optim.generator, config.train.steps)
    self.adversarial = s.adversarial_weight > 0
    if self.adversarial:
      self.discriminator = zoo.build_from_config(config.discriminator)
      self.discriminator_tx = optim.make_optimizer(config.optim.discriminator, config.train.steps)
    if s.content == 'vgg':
      model, self.vgg_variables = load_loss_network(config)
      self.extractor = perceptual.FeatureExtractor(model, (s.vgg_layer,),
                                                   config.perceptual.imagenet_inputs)
    self.generator_init = (checkpoint.load_state(s.generator_init)['players']['generator']
                           if s.get('generator_init') else None)
    prepare_quality_classifiers(config)
    # Every eval pair (HR in [-1, 1], LR in [0, 1]) as arrays, for the image functions.
    rows = [self.data.preprocess(self.data.eval[i]) if self.data.preprocess else self.data.eval[i]
            for i in range(len(self.data.eval))]
    self.eval_images = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in ('image', 'low_res')}

  # The players.

  def generate(self, params, model_state, low_res, train: bool):
    if not train:
      return self.generator.apply({'params': params, **model_state}, low_res,
                                  train=False), model_state
    return apply_training(self.generator, params, model_state, low_res)

  def discriminate(self, params, model_state, images):
    return apply_training(self.discriminator, params, model_state, images)

  def init(self, rng):
    g_key, d_key = jax.random.split(rng)
    g_vars = dict(self.generator.init(g_key, jnp.zeros((1, *self.lr_shape)), train=False))
    g_params = g_vars.pop('params')
    if self.generator_init is not None:  # SRGAN from the trained SRResNet-MSE (sec. 3.2)
      g_params = jax.tree.map(jnp.asarray, self.generator_init['params'])
      g_vars = jax.tree.map(jnp.asarray, self.generator_init['model_state'])
    players = {'generator': PlayerState.create(params=g_params, tx=self.generator_tx,
                                               model_state=g_vars)}
    if self.adversarial:
      d_vars = dict(self.discriminator.init(d_key, jnp.zeros((1, *self.hr_shape)), train=False))
      players['discriminator'] = PlayerState.create(params=d_vars.pop('params'),
                                                    tx=self.discriminator_tx, model_state=d_vars)
    return GameState.create(rng=rng, players=players)

  def content_loss(self, sr, hr):
    s = self.config.sr
    if s.content == 'mse':
      return jnp.mean((sr - hr) ** 2)
    phi = functools.partial(self.extractor, self.vgg_variables)
    fake = phi(to_unit_range(sr))[s.vgg_layer] * s.vgg_scale
    real = jax.lax.stop_gradient(phi(to_unit_range(hr))[s.vgg_layer]) * s.vgg_scale
    return perceptual.feature_loss(fake, real, 'hw')

  def discriminator_update(self, state: GameState, batch):
    generator, player = state.players['generator'], state.players['discriminator']
    fake, _ = self.generate(generator.params, generator.model_state, batch['low_res'], train=True)
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(params):
      real_logits, model_state = self.discriminate(params, player.model_state, batch['image'])
      fake_logits, model_state = self.discriminate(params, model_state, fake)
      loss = gan_losses.discriminator_loss(real_logits, fake_logits)
      return loss, (model_state, {'discriminator_loss': loss,
                                  'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
                                  'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits))})

    (_, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(player.params)
    player = player.apply_gradients(self.discriminator_tx, grads, model_state=model_state)
    return state.replace_player('discriminator', player), metrics

  def train_step(self, state: GameState, batch):
    metrics = {}
    if self.adversarial:
      state, metrics = self.discriminator_update(state, batch)
    generator = state.players['generator']

    def loss_fn(params):
      sr, model_state = self.generate(params, generator.model_state, batch['low_res'], train=True)
      content = self.content_loss(sr, batch['image'])
      terms = {'content_loss': content}
      loss = content
      if self.adversarial:
        critic = state.players['discriminator']
        # D's updated statistics are dropped: they move in its own update only (as gan.py).
        logits, _ = self.discriminate(critic.params, critic.model_state, sr)
        adversarial = gan_losses.non_saturating_generator_loss(logits)
        loss = content + self.config.sr.adversarial_weight * adversarial
        terms['adversarial_loss'] = adversarial
      return loss, (model_state, terms)

    (loss, (model_state, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(generator.params)
    generator = generator.apply_gradients(self.generator_tx, grads, model_state=model_state)
    state = state.replace_player('generator', generator).advance()
    return state, {'loss': loss, **terms, **metrics}

  def super_resolve(self, state: GameState, low_res):
    """HR estimates in [0, 1] (evaluation mode)."""
    generator = state.players['generator']
    return to_unit_range(self.generate(generator.params, generator.model_state, low_res, False)[0])

  def eval_step(self, state: GameState, batch):
    mask, crop = batch['mask'], self.config.sr.eval_crop
    hr = to_unit_range(batch['image'])
    outputs = {'sr': self.super_resolve(state, batch['low_res']),
               'bicubic': bicubic_upsample(batch['low_res'], hr.shape)}
    sums = {'count': jnp.sum(mask)}
    for name, images in outputs.items():
      sums[f'{name}_psnr'] = jnp.sum(mask * image_quality.psnr(images, hr, crop))
      sums[f'{name}_ssim'] = jnp.sum(mask * image_quality.ssim(images, hr, crop))
    return sums

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def _images(self, state: GameState, num: int):
    low_res = jnp.asarray(self.eval_images['low_res'][:num])
    hr = to_unit_range(jnp.asarray(self.eval_images['image'][:num]))
    return {'low_res': low_res, 'high_res': hr, 'sr': self.super_resolve(state, low_res),
            'bicubic': bicubic_upsample(low_res, hr.shape)}

  def _grid(self, state, num):
    images = self._images(state, num // 4)
    nearest = jax.image.resize(images['low_res'], images['high_res'].shape, 'nearest')
    rows = jnp.stack([nearest, images['bicubic'], images['sr'], images['high_res']], axis=1)
    return rows.reshape(-1, *rows.shape[2:])

  def evaluation_fns(self):
    return {'super_resolve': lambda state, key, num: self._images(state, num)['sr'],
            'bicubic': lambda state, key, num: self._images(state, num)['bicubic'],
            'high_res': lambda state, key, num: self._images(state, num)['high_res'],
            'sr_grid': lambda state, key, num: self._grid(state, num)}


if __name__ == '__main__':
  cli.run(SuperResolution)
