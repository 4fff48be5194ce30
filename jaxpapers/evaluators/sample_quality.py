"""Sample quality judged by a fixed classifier: Frechet distance and the Inception-score analogue.

Papers:
  * GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium (Heusel et al.
    2017, arXiv:1706.08500), sec. "Evaluation": the Frechet distance between Gaussians fitted to the
    features of real and generated images,
    d^2 = |mu_r - mu_g|^2 + Tr(C_r + C_g - 2 (C_r C_g)^(1/2))  (`frechet_distance`).
  * Improved Techniques for Training GANs (Salimans et al. 2016, arXiv:1606.03498), sec. 4: the
    Inception score exp(E_x KL(p(y | x) || p(y))), high when each image is classified confidently
    and the classes are diverse (`classifier_score`).

`SampleQuality` is the evaluator (`config.evals` type `sample_quality`): after each evaluation it
draws `num_samples` images with the experiment's `fn(state, key, num)`, and reports their Frechet
distance to the reference split, the classifier score, and `classes_found`, how many classes the
classifier's argmax gives to at least 1% of the samples (mode collapse shows as a low count); for a
class-conditional model (`conditional=True`) also the classifier's accuracy against the classes the
samples were drawn for, overall and per class. The
fixed classifier is a trained run of any zoo classifier whose checkpoint is in
`classifier_workdir` (e.g. `python -m experiments.classify
--config=experiments/configs/classify.py:digits_cnn --workdir=runs/digits_classifier`).

Departures: the features and class probabilities come from a small convnet trained on the real
digits (`digits_cnn`; features are the input of its output layer, its penultimate activations)
rather than Inception-v3 on ImageNet, so the numbers measure the
same things on this data but are not on the scale of published FID / IS values. The trace of the
matrix square root is computed exactly from symmetric eigendecompositions in float64,
Tr (C_r C_g)^(1/2) = sum_i sqrt(lambda_i(C_r^(1/2) C_g C_r^(1/2))), instead of `scipy.linalg.sqrtm`
of the non-symmetric product (whose rounding can leave imaginary parts that FID code must discard).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from jaxpapers import zoo
from jaxpapers.evaluators.base import Evaluator, load_split
from jaxpapers.train import checkpoint


class Statistics(NamedTuple):
  """Mean and covariance of a set of feature vectors (float64)."""
  mean: np.ndarray  # [D]
  cov: np.ndarray  # [D, D]


def feature_statistics(features) -> Statistics:
  """Mean and unbiased covariance of [N, D] features, as FID computes them."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f'need [N >= 2, D] features, got shape {features.shape}')
  return Statistics(features.mean(axis=0), np.cov(features, rowvar=False))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix."""
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: Statistics, b: Statistics) -> float:
  """Squared Frechet (2-Wasserstein) distance between N(a.mean, a.cov) and N(b.mean, b.cov)."""
  root_a = _sqrt_psd(np.asarray(a.cov, np.float64))
  middle = root_a @ np.asarray(b.cov, np.float64) @ root_a
  # C_a C_b is similar to C_a^(1/2) C_b C_a^(1/2), which is symmetric PSD: same eigenvalues.
  trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
  mean_term = np.sum((np.asarray(a.mean, np.float64) - np.asarray(b.mean, np.float64)) ** 2)
  return float(mean_term + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt)


def classifier_score(probs) -> float:
  """exp(E_x KL(p(y|x) || p(y))) for [N, K] class probabilities; p(y) is their mean over x.

  Ranges from 1 (every image gets the same distribution) to K (each image is classified with
  certainty and the classes are equally frequent).
  """
  probs = np.asarray(probs, np.float64)
  marginal = probs.mean(axis=0, keepdims=True)
  # xlogy keeps 0 log 0 = 0: classes an image gives no mass contribute nothing to its KL.
  kl = np.sum(special.xlogy(probs, probs) - special.xlogy(probs, marginal), axis=1)
  return float(np.exp(np.mean(kl)))


class Classifier:
  """A trained Flax classifier ending in a Dense layer, as (features, probabilities) of images.

  Features are the input of the final Dense layer (the penultimate activations), captured with
  `nn.intercept_methods`, so any such classifier works without a features method of its own.
  """

  def __init__(self, model: nn.Module, variables: Any, batch_size: int = 500):
    self.model, self.variables, self.batch_size = model, variables, batch_size
    self._apply = jax.jit(self._features_and_probs)

  def _features_and_probs(self, variables, images):
    dense_inputs = []

    def record(next_fun, args, kwargs, context):
      if isinstance(context.module, nn.Dense) and context.method_name == '__call__':
        dense_inputs.append(args[0])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
      logits = self.model.apply(variables, images, train=False)
    return dense_inputs[-1], jax.nn.softmax(logits, axis=-1)

  def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, H, W, C] in [0, 1] -> features [N, D], probabilities [N, K] (NumPy)."""
    images = np.asarray(images, np.float32)
    features, probs = [], []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      # Pad to one batch shape: a single compilation for every call.
      padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk), *chunk.shape[1:]),
                                               np.float32)])
      f, p = jax.device_get(self._apply(self.variables, padded))
      features.append(f[:len(chunk)])
      probs.append(p[:len(chunk)])
    return np.concatenate(features), np.concatenate(probs)

  def quality(self, images, reference: Statistics) -> dict[str, float]:
    """Frechet distance of `images`' features to `reference`, and the classifier score."""
    features, probs = self(images)
    return {'frechet_distance': frechet_distance(feature_statistics(features), reference),
            'classifier_score': classifier_score(probs)}


def load_classifier(workdir: str, model_name: str) -> Classifier:
  """The classifier trained in `workdir` (the latest checkpoint of a run of zoo model `model_name`)."""
  return Classifier(zoo.build(model_name), jax.tree.map(jnp.asarray,
                                                        checkpoint.load_variables(workdir)))


def class_accuracy(probs, labels) -> dict[str, float]:
  """How often the classifier's argmax is the class a sample was drawn for: overall and per class.

  `class_accuracy_<c>` is the accuracy on the samples drawn for class c (NaN if none was).
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  correct = probs.argmax(axis=1) == labels
  metrics = {'class_accuracy': float(np.mean(correct))}
  for c in range(probs.shape[1]):
    drawn = labels == c
    metrics[f'class_accuracy_{c}'] = float(np.mean(correct[drawn])) if drawn.any() else float('nan')
  return metrics


def sample_metrics(classifier: Classifier, images, reference: Statistics,
                   labels=None) -> dict[str, float]:
  """The evaluator's metrics of a set of images (real or generated), and of their labels if given."""
  features, probs = classifier(images)
  counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
  metrics = {'frechet_distance': frechet_distance(feature_statistics(features), reference),
             'classifier_score': classifier_score(probs),
             'classes_found': float(np.sum(counts >= 0.01 * len(images)))}
  if labels is not None:
    metrics.update(class_accuracy(probs, labels))
  return metrics


class SampleQuality(Evaluator):
  """`conditional=True`: `fn(state, key, num)` returns (images, labels), samples drawn for known
  classes, and the metrics add the fixed classifier's accuracy against those labels
  (`class_accuracy`, and `class_accuracy_<c>` per class)."""
  defaults = {'classifier_workdir': '', 'classifier_model': 'digits_cnn',
              'dataset': 'sklearn_digits', 'split': 'train', 'data_dir': '', 'num_samples': 1000,
              'batch_size': 500, 'seed': 1, 'conditional': False}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    self.classifier = load_classifier(c['classifier_workdir'], c['classifier_model'])
    images = load_split(c['dataset'], c['split'], c['data_dir'], ('image',))['image']
    self.reference = feature_statistics(self.classifier(images.astype(np.float32) / 255.0)[0])

  def __call__(self, state, step, writer):
    c = self.config
    key = jax.random.PRNGKey(c['seed'])
    chunks = []
    for start in range(0, c['num_samples'], c['batch_size']):
      out = self.fn(state, jax.random.fold_in(key, start), c['batch_size'])
      chunks.append(jax.tree.map(np.asarray, jax.device_get(out)))
    if c['conditional']:
      images = np.concatenate([images for images, _ in chunks])[:c['num_samples']]
      labels = np.concatenate([labels for _, labels in chunks])[:c['num_samples']]
    else:
      images, labels = np.concatenate(chunks)[:c['num_samples']], None
    return sample_metrics(self.classifier, images, self.reference, labels)
