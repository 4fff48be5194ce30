"""Zero-shot classification with an image-text model, from prompt ensembles.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford et al. 2021,
arXiv:2103.00020), section 3.1: each class name is put into every prompt template, the text
embeddings of one class are normalised, averaged over the templates and normalised again (the
prompt ensemble of section 3.1.4), and an image is assigned the class of highest cosine similarity.

Config: `fn` is unused; the evaluator takes the experiment's `image_features` (state, images) ->
[N, D] and `text_features` (state, list of strings) -> [N, D]. `task` names a `ZeroShotTask` of
`TASKS` (the class names, templates and labels of a dataset); `splits`, {name: split}. Metrics
`<split>_<label>` with the ensemble and `<split>_<label>_1t` with the first template alone;
with the ensemble also `<split>_<attribute>` (e.g. the shape of the predicted colour-shape pair)
and `<split>_<label>_among_<subset>` (on the split's examples of a subset of the classes, the
argmax over that subset only: the held-out pairs among themselves).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

import jax.numpy as jnp

from jaxpapers.data import shapes_captions
from jaxpapers.errors import ConfigError
from jaxpapers.evaluators.base import Evaluator, load_split, map_batches


@dataclasses.dataclass(frozen=True)
class ZeroShotTask:
  label_name: str
  class_names: list[str]
  templates: tuple[str, ...]
  features: tuple[str, ...]  # the split features `label` reads
  label: Callable[[dict[str, np.ndarray]], np.ndarray]  # split features -> class index [N]
  attributes: dict[str, tuple[str, np.ndarray]]  # name -> (feature, attribute of each class)
  subsets: dict[str, list[int]]  # name -> class indices


def _shapes_captions() -> ZeroShotTask:
  """The 30 "colour shape" pairs; the held-out pairs are the `unseen` subset."""
  colours = len(shapes_captions.COLOURS)
  pairs = np.arange(len(shapes_captions.combination_names()))
  return ZeroShotTask(
      label_name='pair', class_names=shapes_captions.combination_names(),
      templates=shapes_captions.PROMPT_TEMPLATES, features=('shape', 'colour'),
      label=lambda split: shapes_captions.combination(split['shape'], split['colour']),
      attributes={'shape': ('shape', pairs // colours), 'colour': ('colour', pairs % colours)},
      subsets={'unseen': shapes_captions.held_out_combinations()})


TASKS: dict[str, Callable[[], ZeroShotTask]] = {'shapes_captions': _shapes_captions}


def _l2_normalize(x):
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def zero_shot_classifier(class_text_features):
  """[templates, classes, d] text embeddings -> [classes, d] unit class vectors.

  The prompt ensemble of section 3.1.4: each template's embedding is normalised, the templates are
  averaged, and the average is normalised again (with one template this is just normalisation).
  """
  return _l2_normalize(_l2_normalize(class_text_features).mean(axis=0))


def zero_shot_logits(image_features, classifier):
  """Cosine similarity of each image embedding with each class vector: [N, classes]."""
  return _l2_normalize(image_features) @ classifier.T


class ZeroShot(Evaluator):
  defaults = {'task': 'shapes_captions', 'dataset': 'shapes_captions', 'data_dir': '',
              'splits': {'test': 'test'}, 'batch_size': 256}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    if c['task'] not in TASKS:
      raise ConfigError(f'zero_shot task {c["task"]!r}; valid: {", ".join(TASKS)}')
    missing = {'image_features', 'text_features'} - set(fns)
    if missing:
      raise ConfigError(f'the zero_shot evaluator needs the experiment functions {sorted(missing)}')
    self.image_features, self.text_features = fns['image_features'], fns['text_features']
    self.task = TASKS[c['task']]()
    self.sets = {name: load_split(c['dataset'], split, c['data_dir'], ('image', *self.task.features))
                 for name, split in dict(c['splits']).items()}

  def __call__(self, state, step, writer):
    task = self.task
    prompts = [t.format(label=label) for t in task.templates for label in task.class_names]
    text = np.asarray(self.text_features(state, prompts))
    text = text.reshape(len(task.templates), len(task.class_names), -1)
    classifiers = {'': zero_shot_classifier(text), '_1t': zero_shot_classifier(text[:1])}
    results = {}
    for name, data in self.sets.items():
      images = map_batches(self.image_features, state, data['image'], self.config['batch_size'],
                           self.mesh)
      labels = task.label(data)
      for suffix, classifier in classifiers.items():
        logits = np.asarray(zero_shot_logits(images, classifier))
        predicted = logits.argmax(axis=1)
        results[f'{name}_{task.label_name}{suffix}'] = float(np.mean(predicted == labels))
        if suffix:
          continue
        for attribute, (feature, of_class) in task.attributes.items():
          results[f'{name}_{attribute}'] = float(np.mean(of_class[predicted] == data[feature]))
        for subset, classes in task.subsets.items():
          inside = np.isin(labels, classes)  # only the examples of the subset's classes
          if inside.any():
            among = np.asarray(classes)[logits[inside][:, classes].argmax(axis=1)]
            results[f'{name}_{task.label_name}_among_{subset}'] = float(np.mean(among == labels[inside]))
    return results
