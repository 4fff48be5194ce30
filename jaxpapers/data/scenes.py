"""An offline dense-prediction and detection set: scenes of several coloured shapes.

Built by the project for the segmentation and detection papers of issue 21 (U-Net, FCN, SegNet,
FC-DenseNet, FPN; SSD, Mask R-CNN, DETR, ViLD, ...), whose datasets (PASCAL VOC, COCO, LVIS) are out
of reach offline. It keeps what those tasks need: several objects per image, of several classes,
overlapping, each with a class, a tight box and an instance mask, plus the per-pixel class map of
semantic segmentation; and class names that the project's CLIP (trained on `shapes_captions`, which
uses the same shape names) can embed, for open-vocabulary detection.

Each 64x64 RGB image shows 1 to `MAX_OBJECTS` shapes of the five `shapes_captions.SHAPES` (circle,
square, triangle, diamond, cross), each in one of its colours, of radius 4 to 13 pixels, rotated by
up to 10 degrees, anti-aliased (4x4 supersampling), over a dark grey background with pixel noise.
Shapes are painted in order, so later ones occlude earlier ones: each instance's mask is its visible
part (pixels where it covers at least half of the pixel and nothing later covers half), its box the
tight box of that mask, and an object left with fewer than `MIN_AREA` visible pixels is repainted
elsewhere (so every annotated object can be found).

Features, fixed-size so that batches need no ragged handling:
  image         uint8 [64, 64, 3]
  segmentation  uint8 [64, 64]: 0 background, 1 + class index elsewhere (semantic segmentation)
  instances     uint8 [64, 64]: 0 background, 1 + object index elsewhere (instance masks)
  labels        int32 [MAX_OBJECTS]: class index, -1 for padding
  boxes         float32 [MAX_OBJECTS, 4]: (x0, y0, x1, y1) in pixels, the box of the mask's pixels
                (x1 = last column + 1), zeros for padding
  num_objects   int32

Held-out classes (open-vocabulary detection, ViLD): `NOVEL_CLASSES` (diamond and cross) are
annotated in every split, but an open-vocabulary experiment must train on `base_only(example)`,
which removes their annotations (their pixels become background in `segmentation`), as ViLD trains
on LVIS's frequent and common classes only and tests on the rare ones (sec. 4.1). The images
themselves still contain novel objects, unannotated, as in the paper's LVIS setting.

Splits (`Scenes`, 'scenes'): train 4,000 and test 500 images. `ScenesTiny` ('scenes_tiny') is the
same generator with 64 / 32 images, for tests. Every split is a pure function of its seed.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds

from jaxpapers.data import shapes_captions

CLASSES = shapes_captions.SHAPES
NOVEL_CLASSES = ('diamond', 'cross')
BASE_CLASSES = tuple(c for c in CLASSES if c not in NOVEL_CLASSES)
IMAGE_SIZE = 64
MAX_OBJECTS = 4
MIN_AREA = 12
_SUPERSAMPLE = 4
_RADIUS = (4.0, 13.0)
_MAX_ROTATION = np.deg2rad(10.0)
_COLOUR_JITTER = 20


def novel_class_ids() -> list[int]:
  return [CLASSES.index(c) for c in NOVEL_CLASSES]


def base_class_mask() -> np.ndarray:
  """[len(CLASSES)] bool: True for the base (training) classes, False for the held-out ones."""
  return ~np.isin(np.arange(len(CLASSES)), novel_class_ids())


def _coverage(shape: str, rng: np.random.Generator) -> np.ndarray:
  """The fraction of each pixel a randomly placed, sized and rotated `shape` covers, [64, 64]."""
  r = rng.uniform(*_RADIUS)
  margin = 1.35 * r + 0.5  # Every shape, rotated, fits within 1.35 r of its centre.
  cx, cy = rng.uniform(margin, IMAGE_SIZE - margin, 2)
  angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
  offsets = (np.arange(IMAGE_SIZE * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
  dx, dy = offsets[None, :] - cx, offsets[:, None] - cy
  u = np.cos(angle) * dx + np.sin(angle) * dy
  v = -np.sin(angle) * dx + np.cos(angle) * dy
  return shapes_captions._shape_mask(shape, u, v, r).reshape(
      IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE).mean(axis=(1, 3))


def render(rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One scene (every feature of the module docstring), drawn from `rng`."""
  num = int(rng.integers(1, MAX_OBJECTS + 1))
  background = rng.uniform(0, 70)
  image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), background)
  instances = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
  labels = np.full((MAX_OBJECTS,), -1, np.int32)
  for index in range(num):
    label = int(rng.integers(len(CLASSES)))
    for _ in range(20):  # Redraw until the new shape leaves every earlier one MIN_AREA pixels.
      coverage = _coverage(CLASSES[label], rng)
      owned = coverage >= 0.5
      remaining = np.where(owned, 0, instances)
      if owned.sum() >= MIN_AREA and all((remaining == i + 1).sum() >= MIN_AREA
                                         for i in range(index)):
        break
    else:
      break  # No room: this scene keeps the objects it has.
    colour = shapes_captions.COLOUR_NAMES[rng.integers(len(shapes_captions.COLOURS))]
    rgb = np.clip(np.array(shapes_captions.COLOURS[colour])
                  + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, 3), 0, 255)
    image = image * (1 - coverage[..., None]) + rgb * coverage[..., None]
    instances = np.where(owned, index + 1, instances).astype(np.uint8)
    labels[index] = label
  count = int((labels >= 0).sum())
  image = image + rng.normal(0.0, 6.0, image.shape)
  boxes = np.zeros((MAX_OBJECTS, 4), np.float32)
  for i in range(count):
    ys, xs = np.nonzero(instances == i + 1)
    boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
  lookup = np.concatenate([[0], labels[:count] + 1]).astype(np.uint8)
  return {'image': np.clip(np.round(image), 0, 255).astype(np.uint8),
          'segmentation': lookup[instances], 'instances': instances, 'labels': labels,
          'boxes': boxes, 'num_objects': np.int32(count)}


def generate(num_examples: int, seed: int) -> Iterable[dict]:
  rng = np.random.default_rng(seed)
  for _ in range(num_examples):
    yield render(rng)


def instance_masks(example: Mapping[str, np.ndarray]) -> np.ndarray:
  """bool [MAX_OBJECTS, H, W]: each object's mask (all False for padding)."""
  instances = np.asarray(example['instances'])
  return instances[None] == np.arange(1, MAX_OBJECTS + 1)[:, None, None]


def base_only(example: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`example` with the annotations of `NOVEL_CLASSES` removed (kept objects stay in order)."""
  labels = np.asarray(example['labels'])
  keep = (labels >= 0) & ~np.isin(labels, novel_class_ids())
  order = np.nonzero(keep)[0]
  new_labels = np.full_like(labels, -1)
  new_boxes = np.zeros_like(np.asarray(example['boxes']))
  new_labels[:len(order)] = labels[order]
  new_boxes[:len(order)] = np.asarray(example['boxes'])[order]
  # Old instance id -> new one (0 for removed objects and background).
  remap = np.zeros(MAX_OBJECTS + 1, np.uint8)
  remap[order + 1] = np.arange(1, len(order) + 1)
  instances = remap[np.asarray(example['instances'])]
  segmentation = np.where(instances > 0, np.asarray(example['segmentation']), 0).astype(np.uint8)
  return {**example, 'labels': new_labels, 'boxes': new_boxes, 'instances': instances,
          'segmentation': segmentation, 'num_objects': np.int32(len(order))}


class Scenes(tfds.core.GeneratorBasedBuilder):
  """Scenes of shapes with classes, boxes and instance masks (`scenes`): train and test."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SPLITS = {'train': (4_000, 10), 'test': (500, 11)}

  def _info(self) -> tfds.core.DatasetInfo:
    size = (IMAGE_SIZE, IMAGE_SIZE)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f'Scenes of 1-{MAX_OBJECTS} overlapping coloured shapes {CLASSES} with boxes, '
                     f'instance masks and semantic maps; {NOVEL_CLASSES} are the held-out classes '
                     'of open-vocabulary detection.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(*size, 3), dtype=np.uint8),
            'segmentation': tfds.features.Tensor(shape=size, dtype=np.uint8),
            'instances': tfds.features.Tensor(shape=size, dtype=np.uint8),
            'labels': tfds.features.Tensor(shape=(MAX_OBJECTS,), dtype=np.int32),
            'boxes': tfds.features.Tensor(shape=(MAX_OBJECTS, 4), dtype=np.float32),
            'num_objects': tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {name: self._generate_examples(*spec) for name, spec in self.SPLITS.items()}

  def _generate_examples(self, num_examples: int, seed: int):
    for i, example in enumerate(generate(num_examples, seed)):
      yield i, example


class ScenesTiny(Scenes):
  """The same generator, a few dozen images (`scenes_tiny`), for tests."""

  SPLITS = {'train': (64, 10), 'test': (32, 11)}


# Registered in `pipeline.OFFLINE_BUILDERS`: built on first use, no network needed.
BUILDERS = {'scenes': Scenes, 'scenes_tiny': ScenesTiny}
