"""Style transfer by optimising the image: "A Neural Algorithm of Artistic Style" (Gatys, Ecker &
Bethge 2015, arXiv:1508.06576), with the CVPR 2016 version "Image Style Transfer Using
Convolutional Neural Networks".

Sec. 2 (and the 2016 paper's sec. 2-3): the image x is optimised to minimise
L_total = alpha L_content(p, x) + beta L_style(a, x) (eq. 7), where L_content is eq. 1 on
conv4_2 and L_style eq. 5 over conv1_1, conv2_1, conv3_1, conv4_1, conv5_1 with w_l = 1/5
(the losses are in `perceptual.py`); alpha / beta = 1e-3 or 1e-4 in the paper's figures. Features
are the ReLU outputs of those convolutions (`relu4_2`, ...), as in the authors' code; VGG-19 with
max pooling replaced by average pooling (sec. 2: "slightly more appealing results"). The 2016
paper optimises with L-BFGS from white noise (sec. 3: "we initialise with white noise"; starting
from the content photograph gives the same kind of result, faster); `init='content'` or `'noise'`.

`GatysObjective(vgg, variables, content, style, ...)` precomputes the content features P and
the style Gram matrices A once; `objective(image)` returns the total loss and its two terms, for any
optax optimiser (the experiment uses `optim.make_optimizer`: 'lbfgs' as the paper, or 'adam').
Departures: the loss network is whatever zoo VGG the config names (offline: a small VGG-19-layout
network trained on shapes images, see `perceptual.py`); the image is not clipped during the
optimisation (as the paper), only when written out.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax

from jaxpapers.style import perceptual

STYLE_LAYERS = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1')
CONTENT_LAYER = 'relu4_2'


def paper_style_weights() -> dict[str, float]:
  """w_l = 1/5 on the five style layers (sec. 2, Fig. 2)."""
  return {name: 1.0 / len(STYLE_LAYERS) for name in STYLE_LAYERS}


class GatysObjective:
  """alpha L_content + beta L_style of an image batch [B, H, W, 3] in [0, 1] (eq. 7)."""

  def __init__(self, model: nn.Module, variables: Mapping[str, Any],
               content: jax.Array, style: jax.Array, *, content_layer: str = CONTENT_LAYER,
               style_weights: Mapping[str, float] | None = None, content_weight: float = 1e-3,
               style_weight: float = 1.0, imagenet_inputs: bool = True):
    self.style_weights = dict(style_weights or paper_style_weights())
    self.content_layer = content_layer
    self.extractor = perceptual.FeatureExtractor(model, (content_layer, *self.style_weights),
                                                 imagenet_inputs)
    self.variables = variables
    self.content_weight, self.style_weight = content_weight, style_weight
    self.content_target = self.extractor(variables, content)[content_layer]
    style_features = self.extractor(variables, style)
    self.style_targets = {name: perceptual.gram_matrix(style_features[name])
                          for name in self.style_weights}

  def __call__(self, image: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    features = self.extractor(self.variables, image)
    content = perceptual.gatys_content_loss(features[self.content_layer], self.content_target)
    style = perceptual.style_loss(features, self.style_targets, self.style_weights, 'gatys')
    total = self.content_weight * content + self.style_weight * style
    return total, {'content_loss': content, 'style_loss': style}


def initial_image(content: jax.Array, init: str, key: jax.Array) -> jax.Array:
  """The starting image: the content photograph, or white noise U(0, 1) (the 2016 paper)."""
  if init == 'content':
    return content
  if init == 'noise':
    return jax.random.uniform(key, content.shape)
  raise ValueError(f'init={init!r}; valid: content, noise')
