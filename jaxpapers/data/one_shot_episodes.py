"""One-shot learning episodes (Santoro et al. 2016, section 2.1 and 4.1) over offline classes.

"One-shot Learning with Memory-Augmented Neural Networks", Santoro et al. 2016, arXiv:1605.06065.
The paper samples episodes from Omniglot (1,623 classes, augmented by rotations of 90, 180 and 270
degrees, images downscaled to 20x20). Offline there are two sources of classes:

* `glyph_classes`: the project's Omniglot stand-in `font_glyphs` (899 background characters for
  training, 727 of other alphabets for testing, 20 distorted renderings each), downscaled to 20x20
  as the paper does; no rotations (899 classes are already far more than an episode can memorise).
* `digit_classes`: scikit-learn's 8x8 digits times the 4 rotations (each class about 180 images).
  Digits that a rotation maps onto themselves or onto another digit (0, 1 and 8 turned by 180
  degrees, 6 and 9 into each other) would make classes no one can tell apart, so only 2, 3, 4, 5,
  6 and 7 are used: the rotations of 2-5 (16 classes) make the training episodes and those of 6
  and 7 (8 classes the network never trains on) the test episodes, as the paper tests on held-out
  characters. (A first version used all ten digits, 0-7 for training and 8-9 for testing; the
  rotations of 8 are near copies of each other, see WORKSPACE.md.) 16 training classes proved too
  few for a binding that transfers (WORKSPACE.md); the glyphs are the setting closer to the paper.

An episode draws `num_classes` classes (5, the paper's 5-way setting), gives them the labels
0..4 in a random order (a new mapping every episode), draws `per_class` distinct images of each
(10: Table 1 reports the 1st to 10th instance) and shuffles the 50 steps. Items are
{'inputs': float32 [T, D] in [0, 1], 'labels': int32 [T], 'occurrence': int32 [T]} (D = 64 for
digits, 400 for glyphs), where occurrence is 1 for the first time the episode shows that class, 2
for the second, and so on.
Episode i of a source is a pure function of (seed, i).
"""

from __future__ import annotations

import numpy as np

TRAIN_DIGITS, TEST_DIGITS = (2, 3, 4, 5), (6, 7)
ROTATIONS = 4


def digit_classes(digits: tuple[int, ...]) -> list[np.ndarray]:
  """[images of class c, each 64 floats in [0, 1]] for the classes (digit, rotation)."""
  from sklearn.datasets import load_digits  # Only needed when building episodes.
  data = load_digits()
  images = data.images.astype(np.float32) / 16.0
  return [np.rot90(images[data.target == d], k, axes=(1, 2)).reshape(-1, 64).copy()
          for d in digits for k in range(ROTATIONS)]


def glyph_classes(name: str, split: str, data_dir: str | None = None,
                  size: int = 20) -> list[np.ndarray]:
  """[images of class c, each size*size floats in [0, 1]] for the characters of a split of the glyphs
  set `name` ('font_glyphs' or its tiny version; 'train': background alphabets, 'test': evaluation
  ones), bilinearly downscaled from 28x28."""
  import jax  # Only needed when building episodes: the resize, and the data pipeline.
  from jaxpapers.data import pipeline
  rows = pipeline.in_memory(pipeline.load_source(name, split, data_dir))
  images = np.stack([row['image'][..., 0] for row in rows]).astype(np.float32) / 255.0
  labels = np.array([row['label'] for row in rows])
  small = np.asarray(jax.image.resize(images, (len(images), size, size), 'linear', antialias=True))
  small = np.clip(small, 0.0, 1.0).reshape(len(images), size * size)
  return [small[labels == c] for c in np.unique(labels)]


def episode(classes: list[np.ndarray], rng: np.random.Generator, num_classes: int = 5,
            per_class: int = 10) -> dict[str, np.ndarray]:
  chosen = rng.choice(len(classes), num_classes, replace=False)
  labels = np.repeat(np.arange(num_classes), per_class)
  images = np.concatenate([classes[c][rng.choice(len(classes[c]), per_class, replace=False)]
                           for c in chosen])
  order = rng.permutation(len(labels))
  labels, images = labels[order], images[order]
  occurrence = np.zeros_like(labels)
  for c in range(num_classes):
    where = labels == c
    occurrence[where] = np.arange(1, per_class + 1)
  return {'inputs': images.astype(np.float32), 'labels': labels.astype(np.int32),
          'occurrence': occurrence.astype(np.int32)}


class Episodes:
  """`size` episodes over `classes` (random access; episode i from the seed sequence (seed, i))."""

  def __init__(self, classes: list[np.ndarray], size: int, seed: int, num_classes: int = 5,
               per_class: int = 10):
    if num_classes > len(classes):
      raise ValueError(f'{num_classes}-way episodes need that many classes; have {len(classes)}')
    self._classes, self._size, self._seed = classes, size, seed
    self._num_classes, self._per_class = num_classes, per_class

  def __len__(self) -> int:
    return self._size

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self._size:
      raise IndexError(index)
    rng = np.random.default_rng(np.random.SeedSequence([self._seed, index]))
    return episode(self._classes, rng, self._num_classes, self._per_class)
