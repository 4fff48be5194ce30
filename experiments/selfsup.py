"""Self-supervised pre-training of an encoder, scored by linear probes and k-NN on frozen features.

    python -m experiments.selfsup --config=experiments/configs/selfsup.py:simclr_shapes \
        --workdir=runs/selfsup/simclr

One experiment for the six methods of `jaxpapers/selfsup/` (`config.method`): SimCLR (NT-Xent over
the global batch, `simclr.sharded_nt_xent_loss`), MoCo v1 (InfoNCE against a queue of keys from a
momentum key encoder), BYOL (online predictor against a target network on the cosine tau
schedule), SimSiam (predictor, stop-gradient), SwAV (prototypes, Sinkhorn-Knopp codes, swapped
prediction over 2 large + V small crops) and Barlow Twins (cross-correlation to the identity); and
`supervised`, the same encoder trained with a linear classifier on the labels, the baseline of the
comparison. The encoder is a zoo preset (`config.model`); heads come from `config.projector` and
`config.predictor` (`jaxpapers.selfsup.heads.MLPHead`).

The state is a `GameState` with one player, `online` (encoder + heads, its optimiser, BatchNorm
statistics); BYOL's target network and MoCo's key encoder are that player's `ema_params`; MoCo's
queue is `state.buffers['queue']` (`jaxpapers.train.buffers.Queue`). One jitted step: draw the views
on the device (`jaxpapers.selfsup.views`, keyed by the step), run the target branch (no gradient),
take the online player's gradient, update (and the EMA), then the method's after-update moves
(MoCo's enqueue, SwAV's prototype normalisation). Each view is a separate forward pass, so BatchNorm
statistics are per view, as in the papers' code (global over devices under jit).

Evaluators (`config.evals`, final evaluation): `probe` (linear_probe) and `knn` on the encoder's
pooled features h (the representation the papers evaluate, before the projector) for the shape and
colour of the offline captioned shapes (seen colour-shape pairs: validation; held-out pairs: test),
and `random_probe` / `random_knn`, the same on this run's encoder at initialisation.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.selfsup import barlow_twins, byol, moco, simclr, simsiam, swav, views
from jaxpapers.selfsup.heads import MLPHead
from jaxpapers.train import cli, devices, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import GameState, PlayerState

METHODS = ('simclr', 'moco', 'byol', 'simsiam', 'swav', 'barlow_twins', 'supervised')
_WITH_TARGET = ('moco', 'byol')  # methods whose player keeps an EMA (target / key encoder)


def normalize_images(images: jax.Array) -> jax.Array:
  """[0, 1] -> about zero mean and unit range for the encoder."""
  return (images - 0.5) / 0.25


class SelfSupervisedNet(nn.Module):
  """encoder -> h; projector(h) -> z; predictor(z) -> p; prototypes(z / |z|) -> scores; a linear
  classifier on h -> logits. Absent heads are None / 0."""
  encoder: nn.Module
  projector: nn.Module | None = None
  predictor: nn.Module | None = None
  num_prototypes: int = 0
  num_classes: int = 0

  def setup(self):
    if self.num_prototypes:
      self.prototypes = nn.Dense(self.num_prototypes, use_bias=False)
    if self.num_classes:
      self.classifier = nn.Dense(self.num_classes)

  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    out = {'h': self.encoder(x, train=train)}
    if self.projector is not None:
      out['z'] = self.projector(out['h'], train=train)
      if self.predictor is not None:
        out['p'] = self.predictor(out['z'], train=train)
      if self.num_prototypes:
        out['scores'] = self.prototypes(simclr.l2_normalize(out['z']))
    if self.num_classes:
      out['logits'] = self.classifier(out['h'])
    return out

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x, train=False)


class SelfSupervised(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    method = config.method
    if method not in METHODS:
      raise ConfigError(f'config.method={method!r}; valid: {", ".join(METHODS)}')
    source = pipeline.load_source(config.data.name, 'train', config.data.data_dir or None)
    rows = pipeline.in_memory(source)
    self.data = pipeline.Splits(train=pipeline.ArrayRows({
        'image': np.stack([row['image'] for row in rows]),
        'label': np.array([row[config.data.label] for row in rows], np.int32)}))
    self._image_shape = rows[0]['image'].shape
    self._num_classes = source.dataset_info.features[config.data.label].num_classes
    self.model = self._build_model()
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self.tau = byol.target_decay(config.train.steps, config.byol.tau_base)
    if method == 'simclr':
      self._nt_xent = simclr.sharded_nt_xent_loss(mesh, config.simclr.temperature)
    if method == 'swav':
      m = config.swav.multicrop
      large = {**config.views, 'crop_scale': tuple(m.large_scale)}
      small = {**config.views, 'crop_scale': tuple(m.small_scale), 'crop_size': m.small_size}
      self._views = ([views.view_fn(large, i) for i in range(2)]
                     + [views.view_fn(small, i) for i in range(m.small_crops)])
    else:
      self._views = [views.view_fn(config.views, i)
                     for i in range(1 if method == 'supervised' else 2)]

  def _build_model(self) -> SelfSupervisedNet:
    c, method = self.config, self.config.method
    encoder = zoo.build_from_config(c.model)
    head = lambda h: MLPHead(hidden=tuple(h.hidden), features=h.features,
                             output_norm=h.get('output_norm', False))
    if method == 'supervised':
      return SelfSupervisedNet(encoder, num_classes=self._num_classes)
    predictor = head(c.predictor) if method in ('byol', 'simsiam') else None
    return SelfSupervisedNet(encoder, head(c.projector), predictor,
                             num_prototypes=c.swav.num_prototypes if method == 'swav' else 0)

  def init(self, rng):
    params_key, queue_key = jax.random.split(rng)
    variables = self.model.init(params_key, jnp.zeros((1, *self._image_shape)), train=False)
    params = variables.pop('params')
    if self.config.method == 'swav':
      params = _with_normalized_prototypes(params)
    player = PlayerState.create(params=params, tx=self.tx, model_state=dict(variables),
                                ema=self.config.method in _WITH_TARGET)
    buffers = {}
    if self.config.method == 'moco':
      buffers['queue'] = moco.initial_queue(queue_key, self.config.moco.queue_size,
                                            self.config.projector.features)
    return GameState.create(rng=rng, players={'online': player}, buffers=buffers)

  def _crops(self, images, key):
    images = images.astype(jnp.float32) / 255.0
    return [normalize_images(view(images, jax.random.fold_in(key, i)))
            for i, view in enumerate(self._views)]

  def _forward(self, params, model_state, crops):
    """The network on each crop in turn (SwAV's small crops in one call); BN statistics updated."""
    outputs = []
    if self.config.method == 'swav':
      crops = [*crops[:2], jnp.concatenate(crops[2:])] if len(crops) > 2 else crops
    for x in crops:
      out, model_state = self.model.apply({'params': params, **model_state}, x, train=True,
                                          mutable=list(model_state))
      outputs.append(out)
    if self.config.method == 'swav' and len(outputs) > 2:
      small = outputs.pop()
      parts = self.config.swav.multicrop.small_crops
      outputs += [{k: v for k, v in zip(small, values)}
                  for values in zip(*(jnp.split(v, parts) for v in small.values()))]
    return outputs, dict(model_state)

  def _objective(self, outputs, targets, batch, state):
    c, method = self.config, self.config.method
    if method == 'simclr':
      return self._nt_xent(outputs[0]['z'], outputs[1]['z'])
    if method == 'moco':
      return moco.infonce_loss(outputs[0]['z'], targets[1]['z'], state.buffers['queue'].items,
                               c.moco.temperature)
    if method == 'byol':
      return byol.byol_loss(outputs[0]['p'], outputs[1]['p'], targets[0]['z'], targets[1]['z'])
    if method == 'simsiam':
      return simsiam.simsiam_loss(outputs[0]['p'], outputs[1]['p'], outputs[0]['z'],
                                  outputs[1]['z'])
    if method == 'swav':
      return swav.swav_loss([o['scores'] for o in outputs], c.swav.epsilon, c.swav.iterations,
                            c.swav.temperature)[0]
    if method == 'barlow_twins':
      return barlow_twins.barlow_twins_loss(outputs[0]['z'], outputs[1]['z'], c.barlow_twins.lambd)
    return optax.softmax_cross_entropy_with_integer_labels(outputs[0]['logits'],
                                                           batch['label']).mean()

  def train_step(self, state: GameState, batch):
    c, method = self.config, self.config.method
    player = state.players['online']
    crops = self._crops(batch['image'], state.step_rng('views'))
    targets = None
    if method in _WITH_TARGET:  # the target / key encoder: the EMA parameters, no gradient
      targets, _ = self._forward(player.ema_params, player.model_state, crops)
      targets = jax.lax.stop_gradient(targets)

    def loss_fn(params):
      outputs, model_state = self._forward(params, player.model_state, crops)
      return self._objective(outputs, targets, batch, state), (outputs, model_state)

    (loss, (outputs, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(player.params)
    if method == 'swav':  # the prototypes stay fixed at first (appendix A: the first epoch)
      frozen = state.step < c.swav.freeze_prototypes_steps
      grads = {**grads, 'prototypes': jax.tree.map(lambda g: jnp.where(frozen, 0.0, g),
                                                   grads['prototypes'])}
    decay = {'moco': c.moco.momentum, 'byol': self.tau(state.step)}.get(method)
    player = player.apply_gradients(self.tx, grads, model_state=model_state, ema_decay=decay)
    metrics = {'loss': loss}
    if method == 'swav':
      player = player.replace(params=_with_normalized_prototypes(player.params))
    if method == 'moco':
      state = state.replace_buffer('queue', moco.enqueue(state.buffers['queue'], targets[1]['z']))
    if method == 'supervised':
      metrics['accuracy'] = jnp.mean(jnp.argmax(outputs[0]['logits'], -1) == batch['label'])
    else:
      # A collapse monitor (SimSiam, section 4.1): the per-dimension std of z / |z| over the batch,
      # about 1 / sqrt(d) when the outputs spread over the sphere, 0 when they collapse.
      z = simclr.l2_normalize(outputs[0]['z'])
      metrics['z_std'] = jnp.mean(jnp.std(z, axis=0)) * jnp.sqrt(z.shape[-1])
    if decay is not None:
      metrics['ema_decay'] = jnp.asarray(decay, jnp.float32)
    return state.replace_player('online', player).advance(), metrics

  # What the evaluators use.

  @functools.cached_property
  def _encode(self):
    @functools.partial(jax.jit, out_shardings=devices.replicated(self.mesh))
    def encode(variables, images):
      x = normalize_images(images.astype(jnp.float32) / 255.0)
      return self.model.apply(variables, x, method='encode')
    return encode

  @functools.cached_property
  def _initial_state(self):
    return jax.jit(self.init, out_shardings=devices.replicated(self.mesh))(
        jax.random.PRNGKey(self.config.seed))

  def evaluation_fns(self):
    def features(state, images):
      """uint8 images -> the encoder's pooled features h (eval-mode BatchNorm)."""
      player = state.players['online']
      return self._encode({'params': player.params, **player.model_state}, images)

    return {'features': features,
            # This run's encoder at initialisation, whatever the state: the random baseline.
            'features_at_init': lambda state, images: features(self._initial_state, images)}


def _with_normalized_prototypes(params):
  kernel = params['prototypes']['kernel']
  return {**params, 'prototypes': {**params['prototypes'],
                                   'kernel': swav.normalize_prototypes(kernel)}}


if __name__ == '__main__':
  cli.run(SelfSupervised)
