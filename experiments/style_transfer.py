"""Neural style transfer: Gatys et al.'s image optimisation and Johnson et al.'s feed-forward network.

    python -m experiments.style_transfer --config=experiments/configs/style_transfer.py:gatys \
        --workdir=runs/gatys
    python -m experiments.style_transfer --config=experiments/configs/style_transfer.py:johnson \
        --workdir=runs/johnson

`style.method='gatys'` (jaxpapers/style/gatys.py, arXiv:1508.06576): the state's parameters are
the image itself, {'image': [1, H, W, 3]}, started from the content photograph or white noise; one
train step is one optimiser step on alpha L_content + beta L_style (eq. 7; `optim.name='lbfgs'` is
the 2016 paper's L-BFGS, its line search inside the jitted step) of the image clipped to [0, 1]
(the objective of the image that is written out; unclipped, L-BFGS drove pixels far outside the
range and the written image's loss was 9x the optimised one). The data is a constant stream
of empty batches: the content and style targets are fixed when the experiment is built.
`style.method='johnson'` (jaxpapers/style/johnson.py, arXiv:1603.08155): the state is the
transformation network's, trained on batches of content images with the feature reconstruction
loss (relu2_2), the style reconstruction loss (relu1_2, relu2_2, relu3_3, relu4_3) and total
variation (sec. 3.3-3.4, 4.1).

Content and style (offline, `jaxpapers/data/style_images.py`): the test photograph
`style.content` of scikit-learn ('china' at `style.height` rows), the procedurally drawn style
image (`style_images.procedural_style`, seed `style.style_seed`, drawn at the size of each image
it is compared with), and for Johnson's training random crops of the other photograph
('flower'), so the network is evaluated on a photograph it never saw.
Evaluation (both methods, on the test photograph): Gatys' content and style losses with his
layers and weights (`gatys_content_loss`, `gatys_style_loss`, `gatys_total`) and Johnson's
(`johnson_*`), so the two methods are compared on the same numbers; `stylised` gives
[content, style, result] for the PNG grid. The loss network is `config.perceptual` (see
jaxpapers/style/perceptual.py for ImageNet VGG-19 through scripts/convert.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.super_resolution import load_loss_network
from jaxpapers import zoo
from jaxpapers.data import pipeline, style_images
from jaxpapers.errors import ConfigError
from jaxpapers.style import gatys, perceptual
from jaxpapers.train import cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

METHODS = ('gatys', 'johnson')
JOHNSON_CONTENT_LAYER = 'relu2_2'
JOHNSON_STYLE_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')


class StyleTransfer(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    s = config.style
    if s.method not in METHODS:
      raise ConfigError(f'config.style.method={s.method!r}; valid: {", ".join(METHODS)}')
    self.loss_model, self.loss_variables = load_loss_network(config)
    self.content = jnp.asarray(style_images.photograph(s.content, s.height)[None])
    self.style_image = jnp.asarray(
        style_images.procedural_style(*self.content.shape[1:3], seed=s.style_seed)[None])
    self.gatys = gatys.GatysObjective(self.loss_model, self.loss_variables, self.content,
                                      self.style_image, content_weight=s.gatys_content_weight,
                                      style_weight=s.gatys_style_weight,
                                      imagenet_inputs=config.perceptual.imagenet_inputs)
    self.johnson_extractor = perceptual.FeatureExtractor(
        self.loss_model, (JOHNSON_CONTENT_LAYER, *JOHNSON_STYLE_LAYERS),
        config.perceptual.imagenet_inputs)
    self.johnson_targets = self._johnson_grams(self.style_image)
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    if s.method == 'gatys':
      # No data: the targets are fixed. One empty row per example keeps the loop's batching.
      self.data = pipeline.Splits(train=pipeline.ArrayRows({'index': np.zeros((1,), np.int32)}))
    else:
      self.network = zoo.build_from_config(config.network)
      crops = style_images.photo_crops(s.train_photograph, s.num_crops, s.crop_size, config.seed)
      self.data = pipeline.Splits(train=pipeline.ArrayRows(crops),
                                  preprocess=lambda ex: {'image': ex['image'] / np.float32(255)})
      # Gram targets of a style image at the training crops' size.
      crop_style = style_images.procedural_style(s.crop_size, s.crop_size, seed=s.style_seed)
      self.johnson_train_targets = self._johnson_grams(jnp.asarray(crop_style[None]))

  def _johnson_grams(self, style):
    features = self.johnson_extractor(self.loss_variables, style)
    return {name: perceptual.gram_matrix(features[name], 'chw') for name in JOHNSON_STYLE_LAYERS}

  def johnson_losses(self, images, contents, style_grams):
    """Johnson's feature, style and TV losses of `images` [B, H, W, 3] against `contents`."""
    s = self.config.style
    features = self.johnson_extractor(self.loss_variables, images)
    targets = self.johnson_extractor(self.loss_variables, contents)[JOHNSON_CONTENT_LAYER]
    weights = {name: 1.0 for name in JOHNSON_STYLE_LAYERS}
    content = perceptual.feature_loss(features[JOHNSON_CONTENT_LAYER],
                                      jax.lax.stop_gradient(targets))
    style = perceptual.style_loss(features, style_grams, weights, 'johnson')
    tv = perceptual.total_variation(images)
    total = (s.johnson_content_weight * content + s.johnson_style_weight * style
             + s.tv_weight * tv)
    return total, {'content_loss': content, 'style_loss': style, 'tv_loss': tv}

  def init(self, rng):
    if self.config.style.method == 'gatys':
      params = {'image': gatys.initial_image(self.content, self.config.style.init, rng)}
    else:
      params = self.network.init(rng, jnp.zeros((1, *self.content.shape[1:])))['params']
    state = TrainState.create(params=params, tx=self.tx, rng=rng)
    # optax's L-BFGS initialises some line-search statistics as weakly typed scalars, which its
    # update returns strongly typed: make them strong from the start, so the step compiles once.
    return state.replace(opt_state=jax.tree.map(lambda x: x.astype(x.dtype), state.opt_state))

  def train_step(self, state: TrainState, batch):
    if self.config.style.method == 'gatys':
      def loss_fn(params):
        # The objective of the image as it is written out: pixels beyond [0, 1] get no gradient.
        return self.gatys(jnp.clip(params['image'], 0.0, 1.0))
    else:
      def loss_fn(params):
        outputs = self.network.apply({'params': params}, batch['image'])
        return self.johnson_losses(outputs, batch['image'], self.johnson_train_targets)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    # The optimiser gets the objective too: L-BFGS's line search evaluates it; Adam ignores it.
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params, value=loss,
                                        grad=grads, value_fn=lambda p: loss_fn(p)[0])
    params = jax.tree.map(jnp.add, state.params, updates)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return state, {'loss': loss, **terms}

  def eval_data(self):
    # One evaluation of the test photograph (the mask's length only has to shard over the mesh).
    return [{'mask': np.ones((self.mesh.size,), np.float32)}]

  def stylise(self, state: TrainState):
    """The method's result for the test photograph, in [0, 1]."""
    if self.config.style.method == 'gatys':
      return jnp.clip(state.params['image'], 0.0, 1.0)
    return self.network.apply({'params': state.params}, self.content)

  def eval_step(self, state: TrainState, batch):
    image = self.stylise(state)
    gatys_total, gatys_terms = self.gatys(image)
    johnson_total, johnson_terms = self.johnson_losses(image, self.content, self.johnson_targets)
    metrics = {'gatys_total': gatys_total, 'johnson_total': johnson_total,
               **{f'gatys_{k}': v for k, v in gatys_terms.items()},
               **{f'johnson_{k}': v for k, v in johnson_terms.items()}}
    count = jnp.sum(batch['mask'])  # the loop divides the sums by it
    return {'count': count, **{k: v * count for k, v in metrics.items()}}

  @functools.partial(jax.jit, static_argnums=0)
  def _stylised_triplet(self, state):
    return jnp.concatenate([self.content, self.style_image, self.stylise(state)])

  def evaluation_fns(self):
    return {'stylised': lambda state, key, num: self._stylised_triplet(state)}


if __name__ == '__main__':
  cli.run(StyleTransfer)
