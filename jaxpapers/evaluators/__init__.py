"""Evaluators chosen by `config.evals`, shared by every experiment (see `base.py` for the interface).

    sample_grid     a PNG grid (and TensorBoard image) of images drawn with a fixed key
    sample_quality  Frechet distance, classifier score and classes found, by a fixed classifier
    linear_probe    logistic-regression probes on frozen features
    knn             weighted k-nearest-neighbour classification on frozen features
    few_shot        N-way K-shot episodes on held-out classes (prototypes or a pair score)
    verification    same / different pair accuracy at a threshold, ten folds (FaceNet, LFW)
    zero_shot       zero-shot classification from prompt ensembles (CLIP-style towers)
    classification  accuracy and cross-entropy of a classifier on a dataset split
    training_curves a figure of training metrics over steps
    text_samples    generated text appended to a file
    caption_bleu    caption BLEU (sacrebleu) on captioned shapes, beside a nearest-neighbour baseline
    segmentation    mean IoU and pixel accuracy of a segmenter
    detection       COCO box AP of a detector through pycocotools
    label_to_image  a fixed segmenter's mIoU on images generated from label maps, Frechet distance
    domain_transfer a fixed domain classifier's accuracy on translated images
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax

from jaxpapers.errors import ConfigError
from jaxpapers.evaluators.base import Evaluator
from jaxpapers.evaluators.captioning import CaptionBLEU
from jaxpapers.evaluators.classification import Classification
from jaxpapers.evaluators.detection import Detection
from jaxpapers.evaluators.few_shot import FewShot
from jaxpapers.evaluators.knn import KNN
from jaxpapers.evaluators.linear_probe import LinearProbe
from jaxpapers.evaluators.sample_grid import SampleGrid
from jaxpapers.evaluators.sample_quality import SampleQuality
from jaxpapers.evaluators.segmentation import Segmentation
from jaxpapers.evaluators.text_samples import TextSamples
from jaxpapers.evaluators.training_curves import TrainingCurves
from jaxpapers.evaluators.translation import DomainTransfer, LabelToImage
from jaxpapers.evaluators.verification import Verification
from jaxpapers.evaluators.zero_shot import ZeroShot

EVALUATORS: dict[str, type[Evaluator]] = {
    'sample_grid': SampleGrid,
    'sample_quality': SampleQuality,
    'linear_probe': LinearProbe,
    'knn': KNN,
    'few_shot': FewShot,
    'verification': Verification,
    'zero_shot': ZeroShot,
    'classification': Classification,
    'training_curves': TrainingCurves,
    'text_samples': TextSamples,
    'caption_bleu': CaptionBLEU,
    'segmentation': Segmentation,
    'detection': Detection,
    'label_to_image': LabelToImage,
    'domain_transfer': DomainTransfer,
}


def build(evals: Mapping[str, Mapping[str, Any]] | None, fns: Mapping[str, Callable[..., Any]],
          mesh: jax.sharding.Mesh) -> dict[str, Evaluator]:
  """Every evaluator of `config.evals`, by entry name."""
  evaluators = {}
  for name, config in (evals or {}).items():
    kind = config.get('type')
    if kind not in EVALUATORS:
      raise ConfigError(f'config.evals.{name}.type={kind!r}; valid: {", ".join(EVALUATORS)}')
    evaluators[name] = EVALUATORS[kind](config, fns, mesh)
  return evaluators
