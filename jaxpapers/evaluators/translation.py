"""Image-to-image translation judged by fixed networks: label-to-image and domain transfer.

`label_to_image` (pix2pix, SPADE on the scenes set): the experiment's `fn(state, segmentation
[N, H, W] int) -> images [N, H, W, 3] in [0, 1]` is run over a split's label maps; a segmenter
trained on the real images (a run of `experiments/segment.py`, e.g. `unet_scenes`, in
`segmenter_workdir`) segments the generated images, and the metrics are its `miou` and
`pixel_accuracy` against the input maps: SPADE's evaluation (Park et al. 2019, arXiv:1903.07291,
sec. 4, "we run a semantic segmentation model on the synthesized images and compare how well the
predicted segmentation mask matches the ground truth input"; pix2pix's FCN-score, Isola et al.
2016, sec. 4.2, is the same idea). The same metrics of the real images are `real_miou` and
`real_pixel_accuracy`, the ceiling. `frechet_distance` compares the generated and real images'
features from the same segmenter: the input of its last convolution (the per-pixel classifier),
averaged over space (`SegmenterFeatures`), through `sample_quality.frechet_distance`. Those
features are made to tell shapes apart, not colours, so the colour distribution is measured too, as
pix2pix's sec. 4.3 / Table 2 does (histogram intersection with the real images' colours, there in
Lab): `colour_intersection`, the intersection of the 8x8x8-bin RGB histograms of generated and
real object pixels (label > 0; 1 = the same distribution), and `saturation`, their mean
max - min channel value beside the real images' `real_saturation`.

`domain_transfer` (CycleGAN on shapes_domains): `fn(state, images, direction) -> images` with
direction 'ab' or 'ba'; a fixed domain classifier (scikit-learn logistic regression on the 8x8
average-pooled pixels of the real training images of both domains) says which domain each
translated test image looks like: `domain_accuracy_ab` is the fraction of G(a) classified as B,
`domain_accuracy_ba` of F(b) as A (and `real_domain_accuracy` on the real test images).

Departures: the segmenter and its features are this project's small U-Net on 64x64 scenes, not the
paper's DRN / UperNet on Cityscapes or ADE20K and Inception features, so the numbers are not on the
scale of the published ones; the domain classifier is linear on pixels: enough for two colour
styles, not for horses and zebras.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from sklearn import linear_model

from jaxpapers import zoo
from jaxpapers.evaluators.base import Evaluator, load_split, map_batches
from jaxpapers.evaluators.sample_quality import feature_statistics, frechet_distance
from jaxpapers.evaluators.segmentation import segmentation_metrics
from jaxpapers.train import checkpoint


class SegmenterFeatures:
  """A trained segmenter as (class ids [N, H, W], space-averaged features [N, D]) of images in
  [0, 1]; the features are the input of its last convolution, captured with `nn.intercept_methods`."""

  def __init__(self, model: nn.Module, variables: Any):
    self.model, self.variables = model, variables
    self._apply = jax.jit(self._segment)

  def _segment(self, variables, images):
    conv_inputs = []

    def record(next_fun, args, kwargs, context):
      if isinstance(context.module, nn.Conv) and context.method_name == '__call__':
        conv_inputs.append(args[0])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
      logits = self.model.apply(variables, images, train=False)['out']
    return jnp.argmax(logits, -1), conv_inputs[-1].mean(axis=(1, 2))

  def __call__(self, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    classes, features = [], []
    for start in range(0, len(images), batch_size):
      chunk = np.asarray(images[start:start + batch_size], np.float32)
      padded = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - len(chunk), axis=0)])
      c, f = jax.device_get(self._apply(self.variables, padded))
      classes.append(c[:len(chunk)])
      features.append(f[:len(chunk)])
    return np.concatenate(classes), np.concatenate(features)


def colour_histogram(images: np.ndarray, mask: np.ndarray, bins: int = 8) -> np.ndarray:
  """The normalised bins^3 RGB histogram of the pixels of images [N, H, W, 3] in [0, 1] where
  mask [N, H, W] is true."""
  pixels = np.clip(np.asarray(images)[np.asarray(mask)], 0.0, 1.0)
  counts, _ = np.histogramdd(pixels, bins=bins, range=[(0.0, 1.0)] * 3)
  return counts.ravel() / max(counts.sum(), 1.0)


def _saturation(images: np.ndarray, mask: np.ndarray) -> float:
  pixels = np.asarray(images)[np.asarray(mask)]
  return float(np.mean(pixels.max(-1) - pixels.min(-1)))


class LabelToImage(Evaluator):
  defaults = {'segmenter_workdir': '', 'segmenter_model': 'unet_scenes', 'dataset': 'scenes',
              'split': 'test', 'data_dir': '', 'batch_size': 50, 'limit': 0}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    data = load_split(c['dataset'], c['split'], c['data_dir'], ('image', 'segmentation'),
                      c['limit'])
    self.labels = data['segmentation'].astype(np.int32)
    self.num_classes = int(self.labels.max()) + 1
    variables = jax.tree.map(jnp.asarray, checkpoint.load_variables(c['segmenter_workdir']))
    self.segmenter = SegmenterFeatures(zoo.build(c['segmenter_model']), variables)
    real = data['image'].astype(np.float32) / 255.0
    real_classes, real_features = self.segmenter(real, c['batch_size'])
    self.reference = feature_statistics(real_features)
    self.objects = self.labels > 0
    self.real_histogram = colour_histogram(real, self.objects)
    self.real_metrics = {**self._metrics(real_classes),
                         'saturation': _saturation(real, self.objects)}

  def _metrics(self, classes: np.ndarray) -> dict[str, float]:
    metrics = segmentation_metrics(self.labels, classes, self.num_classes)
    return {'miou': metrics['miou'], 'pixel_accuracy': metrics['pixel_accuracy']}

  def __call__(self, state, step, writer):
    c = self.config
    images = map_batches(self.fn, state, self.labels, c['batch_size'], self.mesh)
    classes, features = self.segmenter(images, c['batch_size'])
    intersection = np.minimum(colour_histogram(images, self.objects), self.real_histogram).sum()
    return {**self._metrics(classes),
            'frechet_distance': frechet_distance(feature_statistics(features), self.reference),
            'colour_intersection': float(intersection),
            'saturation': _saturation(images, self.objects),
            **{f'real_{k}': v for k, v in self.real_metrics.items()}}


def _pooled_pixels(images: np.ndarray) -> np.ndarray:
  """uint8 or [0, 1] images [N, H, W, C] -> [N, 8 * 8 * C] averages over an 8x8 grid of cells."""
  images = np.asarray(images, np.float32)
  if images.max() > 1.0:
    images = images / 255.0
  n, h, w, c = images.shape
  return images.reshape(n, 8, h // 8, 8, w // 8, c).mean(axis=(2, 4)).reshape(n, -1)


class DomainTransfer(Evaluator):
  defaults = {'dataset': 'shapes_domains', 'train_split': 'train', 'split': 'test', 'data_dir': '',
              'batch_size': 50}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    train = load_split(c['dataset'], c['train_split'], c['data_dir'], ('image_a', 'image_b'))
    features = np.concatenate([_pooled_pixels(train['image_a']), _pooled_pixels(train['image_b'])])
    domains = np.repeat([0, 1], len(train['image_a']))
    self.classifier = linear_model.LogisticRegression(max_iter=1000).fit(features, domains)
    self.test = load_split(c['dataset'], c['split'], c['data_dir'], ('image_a', 'image_b'))

  def __call__(self, state, step, writer):
    c = self.config
    metrics = {}
    for direction, source, target in (('ab', 'image_a', 1), ('ba', 'image_b', 0)):
      images = self.test[source].astype(np.float32) / 255.0
      translated = map_batches(lambda s, x, d=direction: self.fn(s, x, d), state, images,
                               c['batch_size'], self.mesh)
      predicted = self.classifier.predict(_pooled_pixels(translated))
      metrics[f'domain_accuracy_{direction}'] = float(np.mean(predicted == target))
    real = np.concatenate([_pooled_pixels(self.test['image_a']),
                           _pooled_pixels(self.test['image_b'])])
    metrics['real_domain_accuracy'] = float(np.mean(
        self.classifier.predict(real) == np.repeat([0, 1], len(self.test['image_a']))))
    return metrics
