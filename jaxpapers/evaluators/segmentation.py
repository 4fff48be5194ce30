"""Semantic segmentation: the confusion matrix, per-class IoU and mean IoU of a segmenter.

The metric of FCN (Long et al. 2015, arXiv:1411.4038, sec. 5): with n_ij the number of pixels of
class i predicted as class j and t_i = sum_j n_ij, mean IU = (1 / n_cl) sum_i n_ii / (t_i +
sum_j n_ji - n_ii), and pixel accuracy sum_i n_ii / sum_i t_i. The confusion matrix comes from
`sklearn.metrics.confusion_matrix`; the IoU of a class absent from both the labels and the
predictions is undefined and left out of the mean (as torchvision's and mmseg's evaluation do).

The evaluator (`config.evals` type `segmentation`) runs the experiment's `fn(state, images) ->
class ids [N, H, W]` over a split of a dataset with `image` and `segmentation` features (the
offline `scenes` set) and reports `miou`, `pixel_accuracy` and `iou_<class>`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from sklearn import metrics as sk_metrics

from jaxpapers.data import pipeline
from jaxpapers.evaluators.base import Evaluator, load_split, map_batches


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [C, C]: rows the true class, columns the predicted one, over every pixel."""
  return sk_metrics.confusion_matrix(np.ravel(labels), np.ravel(predictions),
                                     labels=np.arange(num_classes))


def iou_from_confusion(matrix: np.ndarray) -> np.ndarray:
  """Per-class IoU [C], NaN for a class neither present nor predicted."""
  matrix = np.asarray(matrix, np.float64)
  intersection = np.diag(matrix)
  union = matrix.sum(0) + matrix.sum(1) - intersection
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(union > 0, intersection / union, np.nan)


def segmentation_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                         class_names: Sequence[str] | None = None) -> dict[str, float]:
  matrix = confusion(labels, predictions, num_classes)
  iou = iou_from_confusion(matrix)
  out = {'miou': float(np.nanmean(iou)),
         'pixel_accuracy': float(np.trace(matrix) / max(matrix.sum(), 1))}
  names = class_names or [str(i) for i in range(num_classes)]
  out.update({f'iou_{name}': float(v) for name, v in zip(names, iou)})
  return out


class Segmentation(Evaluator):
  defaults = {'dataset': 'scenes', 'data_dir': '', 'split': 'test', 'batch_size': 64,
              'label_feature': 'segmentation'}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    self.fn = jax.jit(self.fn)  # compiled once for every batch, rather than run op by op
    c = self.config
    data = load_split(c['dataset'], c['split'], c['data_dir'], ('image', c['label_feature']))
    self.images = data['image'].astype(np.float32) / 255.0
    self.labels = data[c['label_feature']].astype(np.int64)
    source = pipeline.load_source(c['dataset'], c['split'], c['data_dir'] or None)
    self.class_names = _class_names(source.dataset_info)

  def __call__(self, state, step, writer):
    predictions = map_batches(self.fn, state, self.images, self.config['batch_size'], self.mesh)
    return segmentation_metrics(self.labels, predictions, len(self.class_names), self.class_names)


def _class_names(info) -> list[str]:
  """Background and the classes of an offline scenes-like dataset (its builder's CLASSES)."""
  from jaxpapers.data import scenes
  if info.name.startswith('scenes'):
    return ['background', *scenes.CLASSES]
  raise ValueError(f'no class names known for dataset {info.name!r}')
