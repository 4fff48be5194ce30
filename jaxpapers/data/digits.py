"""An offline TFDS dataset over scikit-learn's handwritten digits (UCI optdigits test set, 1,797 images).

The 8x8 images ship inside scikit-learn, so tests and demos get real images with no network. Pixel
values 0..16 are rescaled to 0..255 uint8; 360 images (20%, a fixed permutation) form the test split.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

TEST_SIZE = 360


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 digits as a TFDS dataset (`sklearn_digits`), with train and test splits."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not dataset_info_from_configs, which looks for a metadata directory).
    return tfds.core.DatasetInfo(
        builder=self,
        description='scikit-learn load_digits: 8x8 grey images of handwritten digits 0-9.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    from sklearn.datasets import load_digits  # Imported here: only needed when building.
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return {'train': self._generate_examples(images[train], digits.target[train], train),
            'test': self._generate_examples(images[test], digits.target[test], test)}

  def _generate_examples(self, images, labels, ids):
    for image, label, i in zip(images, labels, ids):
      yield int(i), {'image': image, 'label': int(label)}
