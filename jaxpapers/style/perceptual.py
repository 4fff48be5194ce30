"""Perceptual losses on VGG features: the Gram matrix, style loss, content (feature) loss, total variation.

Papers:
  * A Neural Algorithm of Artistic Style (Gatys, Ecker & Bethge 2015, arXiv:1508.06576; CVPR 2016
    "Image Style Transfer Using Convolutional Neural Networks"), sec. 2: the content loss of a layer
    l, L_content = 1/2 sum_ij (F^l_ij - P^l_ij)^2 (eq. 1), the Gram matrix G^l_ij = sum_k F^l_ik
    F^l_jk of the N_l x M_l feature matrix (eq. 3), its per-layer style error
    E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G^l_ij - A^l_ij)^2 (eq. 4) and L_style = sum_l w_l E_l (eq. 5).
  * Perceptual Losses for Real-Time Style Transfer and Super-Resolution (Johnson, Alahi & Fei-Fei
    2016, arXiv:1603.08155), sec. 3.3-3.4: the feature reconstruction loss
    1 / (C_j H_j W_j) ||phi_j(y) - phi_j(y_hat)||^2, the Gram matrix normalised by C_j H_j W_j and the
    style reconstruction loss ||G_j(y) - G_j(y_hat)||_F^2, and the total variation regulariser.
  * SRGAN (Ledig et al. 2016, arXiv:1609.04802), eq. 5: the VGG loss
    1 / (W H) sum (phi(I_HR) - phi(G(I_LR)))^2, Johnson's feature loss up to the channel count.

Both conventions are `gram_matrix(features, normalise=...)`: 'none' is Gatys' G (then `style_loss`
applies eq. 4's 1 / (4 N^2 M^2)), 'chw' is Johnson's. Losses take the batch mean of per-image
values.

The loss network is the convnet zoo's VGG (`jaxpapers/convnets/vgg.py`), whose ReLU outputs are
sown as `relu{block}_{conv}`; `FeatureExtractor` runs it without its classifier and returns the
named layers. Inputs are images in [0, 1], normalised with ImageNet's mean and standard deviation
(torchvision's, `IMAGENET_MEAN`/`IMAGENET_STD`) as the converted weights expect; Gatys' Caffe VGG
took BGR inputs with only the mean removed, which torchvision's weights do not.

ImageNet VGG-19 for real use (nothing is downloaded here):

    python scripts/convert.py --source=torchvision --preset=vgg19 \
        --weights=vgg19-dcbb9e9d.pth --out=converted/vgg19
    python -m experiments.style_transfer --config=experiments/configs/style_transfer.py:gatys \
        --config.perceptual.model.name=vgg19 --config.perceptual.init_from=converted/vgg19 ...

`perceptual.init_from` is read with `jaxpapers.train.init_from.load_variables` (the layout
scripts/convert.py writes, the same `init_from` directories `--config.init_from` reads), or, for a
directory holding a training run, with `checkpoint.load_variables`: the offline experiments point it
at a run of `experiments/configs/classify.py:vgg19_bn_mini_shapes`, the `vgg19_bn_mini` network
trained on the 32x32 shapes images, because ImageNet weights cannot be downloaded here.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.train import checkpoint, init_from

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
GRAM_NORMALISATIONS = ('none', 'chw')


def load_loss_network_variables(directory: str) -> dict[str, Any]:
  """Frozen VGG variables from a converted-weights directory or from a training run's workdir."""
  if os.path.exists(os.path.join(directory, 'converted.json')):
    return init_from.load_variables(directory)[0]
  return checkpoint.load_variables(directory)


class FeatureExtractor:
  """`extractor(variables, images)` -> {layer: activations [B, H, W, C]} of a zoo VGG.

  `images` are in [0, 1]; the network runs in evaluation mode, without its classifier. With
  `imagenet_inputs` (converted torchvision weights) they are first normalised by ImageNet's mean
  and standard deviation; without it (a loss network trained here on [0, 1] images) they go in as
  they are.
  """

  def __init__(self, model: nn.Module, layers: Sequence[str], imagenet_inputs: bool = True):
    self.model, self.layers = model, tuple(dict.fromkeys(layers))
    self.imagenet_inputs = imagenet_inputs

  def __call__(self, variables: Mapping[str, Any], images: jax.Array) -> dict[str, jax.Array]:
    x = (images - IMAGENET_MEAN) / IMAGENET_STD if self.imagenet_inputs else images
    _, state = self.model.apply(variables, x, train=False, head=False, mutable=['intermediates'])
    sown = state['intermediates']
    missing = [name for name in self.layers if name not in sown]
    if missing:
      raise ValueError(f'{type(self.model).__name__} has no layer {", ".join(missing)}; its layers: '
                       f'{", ".join(sown)}')
    return {name: sown[name][0] for name in self.layers}


def gram_matrix(features: jax.Array, normalise: str = 'none') -> jax.Array:
  """[B, H, W, C] -> [B, C, C]: G_ij = sum over positions of F_i F_j (Gatys eq. 3), divided by
  C H W for `normalise='chw'` (Johnson et al. sec. 3.3)."""
  if normalise not in GRAM_NORMALISATIONS:
    raise ValueError(f'normalise={normalise!r}; valid: {", ".join(GRAM_NORMALISATIONS)}')
  b, h, w, c = features.shape
  flat = features.reshape(b, h * w, c)
  gram = jnp.einsum('bmi,bmj->bij', flat, flat, precision=jax.lax.Precision.HIGHEST)
  return gram / (c * h * w) if normalise == 'chw' else gram


def gatys_layer_style_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
  """E_l = 1 / (4 N^2 M^2) sum_ij (G_ij - A_ij)^2 (Gatys eq. 4), N channels, M positions; batch mean."""
  _, h, w, c = features.shape
  diff = gram_matrix(features) - target_gram
  return jnp.mean(jnp.sum(diff ** 2, axis=(1, 2))) / (4.0 * c ** 2 * (h * w) ** 2)


def johnson_layer_style_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
  """||G(y_hat) - G(y)||_F^2 with C H W-normalised Gram matrices (Johnson et al. sec. 3.3)."""
  diff = gram_matrix(features, 'chw') - target_gram
  return jnp.mean(jnp.sum(diff ** 2, axis=(1, 2)))


def style_loss(features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
               weights: Mapping[str, float], convention: str = 'gatys') -> jax.Array:
  """sum_l w_l E_l over the layers of `weights` (Gatys eq. 5, or Johnson's per-layer loss).

  `target_grams[l]` is the style image's Gram matrix [1 or B, C, C] in the same convention
  (`gram_matrix` with 'none' for 'gatys', 'chw' for 'johnson').
  """
  layer_loss = {'gatys': gatys_layer_style_loss, 'johnson': johnson_layer_style_loss}[convention]
  return sum(w * layer_loss(features[name], target_grams[name]) for name, w in weights.items())


def gatys_content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
  """1/2 sum (F - P)^2 over one layer (Gatys eq. 1); batch mean."""
  return 0.5 * jnp.mean(jnp.sum((features - target) ** 2, axis=(1, 2, 3)))


def feature_loss(features: jax.Array, target: jax.Array, normalise: str = 'chw') -> jax.Array:
  """Mean squared feature difference: over C H W (Johnson's feature reconstruction loss, 'chw') or
  summed over channels and averaged over the H W positions (SRGAN's VGG loss, eq. 5: 'hw')."""
  squared = (features - target) ** 2
  if normalise == 'hw':
    return jnp.mean(jnp.sum(squared, axis=-1))
  if normalise == 'chw':
    return jnp.mean(squared)
  raise ValueError(f'normalise={normalise!r}; valid: chw, hw')


def total_variation(images: jax.Array) -> jax.Array:
  """Anisotropic squared total variation, sum of squared differences of neighbouring pixels per
  image (Johnson et al. sec. 3.4, after Mahendran & Vedaldi 2015); batch mean."""
  dy = images[:, 1:] - images[:, :-1]
  dx = images[:, :, 1:] - images[:, :, :-1]
  return jnp.mean(jnp.sum(dy ** 2, axis=(1, 2, 3)) + jnp.sum(dx ** 2, axis=(1, 2, 3)))
