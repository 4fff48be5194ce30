"""An offline unpaired image-to-image set: the captioned shapes in two styles, for CycleGAN.

Built by the project for "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks" (Zhu et al. 2017, arXiv:1703.10593), whose unpaired sets (horses and zebras, Monet and
photos, ...) are out of reach offline. It keeps what the paper's setting needs: two image domains
with the same kind of content in different appearances, and training images of the two domains
that do not correspond to each other.

Domain A is the 32x32 shapes of `shapes_captions` (a coloured shape over a dark grey background
with pixel noise); domain B is the photographic negative of such images (255 - A: a light
background and the complementary colour). In `train` image_a and image_b are independent draws
(unpaired: image_b is the negative of another image); in `test` image_b is the negative of image_a,
so the true translation of every test image is known and a translation's error can be measured.

Features: image_a, image_b uint8 [32, 32, 3]; shape_a, shape_b (the `shapes_captions.SHAPES` class
of each image). Splits (`ShapesDomains`, 'shapes_domains'): train 4,000 and test 500;
`ShapesDomainsTiny` ('shapes_domains_tiny'): 64 / 32, for tests. Every split is a pure function
of its seeds.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import tensorflow_datasets as tfds

from jaxpapers.data import shapes_captions

IMAGE_SIZE = shapes_captions.IMAGE_SIZE


def to_domain_b(image_a: np.ndarray) -> np.ndarray:
  """The true A -> B translation: the negative of a uint8 image."""
  return (255 - np.asarray(image_a, np.int32)).astype(np.uint8)


def generate(num_examples: int, seed: int, paired: bool) -> Iterable[dict]:
  domain_a = shapes_captions.generate(num_examples, seed, held_out=False)
  # Unpaired: B comes from an independent stream of shapes (another seed).
  domain_b = shapes_captions.generate(num_examples, seed + 1000, held_out=False)
  for a, b in zip(domain_a, domain_b):
    source_b = a if paired else b
    yield {'image_a': a['image'], 'image_b': to_domain_b(source_b['image']),
           'shape_a': a['shape'], 'shape_b': source_b['shape']}


class ShapesDomains(tfds.core.GeneratorBasedBuilder):
  """Shapes in two styles (`shapes_domains`): unpaired train, paired test."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SPLITS = {'train': (4_000, 20, False), 'test': (500, 21, True)}

  def _info(self) -> tfds.core.DatasetInfo:
    image = tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return tfds.core.DatasetInfo(
        builder=self,
        description=('Rendered shapes (domain A) and negatives of rendered shapes (domain B): '
                     'unpaired in train, paired (image_b = 255 - image_a) in test.'),
        features=tfds.features.FeaturesDict({
            'image_a': image, 'image_b': image,
            'shape_a': tfds.features.ClassLabel(names=shapes_captions.SHAPES),
            'shape_b': tfds.features.ClassLabel(names=shapes_captions.SHAPES),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {name: self._generate_examples(*spec) for name, spec in self.SPLITS.items()}

  def _generate_examples(self, num_examples: int, seed: int, paired: bool):
    for i, example in enumerate(generate(num_examples, seed, paired)):
      yield i, example


class ShapesDomainsTiny(ShapesDomains):
  """The same generator, a few dozen examples (`shapes_domains_tiny`), for tests."""

  SPLITS = {'train': (64, 20, False), 'test': (32, 21, True)}


# Registered in `pipeline.OFFLINE_BUILDERS`: built on first use, no network needed.
BUILDERS = {'shapes_domains': ShapesDomains, 'shapes_domains_tiny': ShapesDomainsTiny}
