"""The scenes set: boxes are the tight boxes of the instance masks, maps agree, held-out classes."""

import numpy as np
import pytest

from jaxpapers.data import pipeline, scenes


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  return {split: pipeline.in_memory(pipeline.load_source('scenes_tiny', split, directory))
          for split in ('train', 'test')}


def test_annotations_agree_with_each_other(splits):
  assert [len(splits[s]) for s in ('train', 'test')] == [64, 32]
  counts = []
  for ex in splits['train'] + splits['test']:
    n = int(ex['num_objects'])
    counts.append(n)
    assert ex['image'].shape == (64, 64, 3) and ex['image'].dtype == np.uint8
    np.testing.assert_array_equal(ex['labels'][n:], -1)
    assert (ex['labels'][:n] >= 0).all()
    masks = scenes.instance_masks(ex)
    assert not masks[n:].any()
    for i in range(n):
      assert masks[i].sum() >= scenes.MIN_AREA
      ys, xs = np.nonzero(masks[i])
      np.testing.assert_array_equal(ex['boxes'][i], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
      # The semantic map is the instance map's classes.
      np.testing.assert_array_equal(ex['segmentation'][masks[i]], ex['labels'][i] + 1)
    np.testing.assert_array_equal(ex['segmentation'] == 0, ex['instances'] == 0)
    # Objects are coloured, the background grey: the mask pixels are the saturated ones.
    image = ex['image'].astype(int)
    saturated = image.max(-1) - image.min(-1) > 60
    assert (saturated == (ex['instances'] > 0)).mean() > 0.97
  assert set(counts) == {1, 2, 3, 4}


def test_base_only_removes_novel_annotations(splits):
  novel = scenes.novel_class_ids()
  seen_novel = False
  for ex in splits['train']:
    base = scenes.base_only(ex)
    n = int(base['num_objects'])
    labels = list(ex['labels'][:ex['num_objects']])
    kept = [label for label in labels if label not in novel]
    assert list(base['labels'][:n]) == kept
    seen_novel |= len(kept) < len(labels)
    assert not np.isin(base['segmentation'] - 1, novel).any()
    masks, old_masks = scenes.instance_masks(base), scenes.instance_masks(ex)
    old = [i for i, label in enumerate(labels) if label not in novel]
    for new_index, old_index in enumerate(old):
      np.testing.assert_array_equal(masks[new_index], old_masks[old_index])
      np.testing.assert_array_equal(base['boxes'][new_index], ex['boxes'][old_index])
    # The image keeps the novel objects, unannotated.
    np.testing.assert_array_equal(base['image'], ex['image'])
  assert seen_novel


def test_generation_is_a_pure_function_of_the_seed():
  first, again, other = (list(scenes.generate(3, seed)) for seed in (5, 5, 6))
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert any(not np.array_equal(a['image'], c['image']) for a, c in zip(first, other))
