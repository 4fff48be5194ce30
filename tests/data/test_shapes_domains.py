"""The two-domain shapes set: train unpaired, test paired by the known translation; the
translation preprocessors."""

import numpy as np
import pytest

from jaxpapers.data import pipeline, shapes_domains


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  return {split: pipeline.in_memory(pipeline.load_source('shapes_domains_tiny', split, directory))
          for split in ('train', 'test')}


def test_test_pairs_are_the_true_translation_and_train_pairs_are_not(splits):
  assert [len(splits[s]) for s in ('train', 'test')] == [64, 32]
  for ex in splits['test']:
    np.testing.assert_array_equal(ex['image_b'], shapes_domains.to_domain_b(ex['image_a']))
    assert ex['shape_a'] == ex['shape_b']
  unpaired = [np.array_equal(ex['image_b'], shapes_domains.to_domain_b(ex['image_a']))
              for ex in splits['train']]
  assert not any(unpaired)
  # The domains differ in appearance: dark backgrounds in A, light ones in B.
  a = np.stack([ex['image_a'] for ex in splits['train']]).astype(float)
  b = np.stack([ex['image_b'] for ex in splits['train']]).astype(float)
  assert np.median(a[:, 0, 0]) < 80 < 175 < np.median(b[:, 0, 0])


def test_translation_preprocessors_give_images_in_minus_one_one(splits):
  ex = pipeline.unpaired_preprocess(splits['train'][0])
  assert set(ex) == {'image_a', 'image_b'}
  for image in ex.values():
    assert image.dtype == np.float32 and image.min() >= -1.0 and image.max() <= 1.0
  scene = {'image': np.full((4, 4, 3), 255, np.uint8), 'segmentation': np.eye(4, dtype=np.uint8)}
  out = pipeline.label_to_image_preprocess(scene)
  np.testing.assert_allclose(out['image'], 1.0)
  assert out['segmentation'].dtype == np.int32
