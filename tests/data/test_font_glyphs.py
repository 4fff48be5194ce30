"""The offline few-shot glyphs: disjoint background / evaluation classes, distortions, the sampler."""

import numpy as np
import pytest

from jaxpapers.data import episodes, font_glyphs as fg, pipeline
from jaxpapers.errors import ConfigError


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  return {split: pipeline.in_memory(pipeline.load_source('font_glyphs_tiny', split, directory))
          for split in ('train', 'test')}


def test_background_and_evaluation_alphabets_and_classes_are_disjoint(splits):
  train, test = splits['train'], splits['test']
  assert len(train) == 4 * 8 * 10 and len(test) == 2 * 8 * 10
  alphabets = [name for name, _, _ in fg.ALPHABETS]
  train_alphabets = {alphabets[e['alphabet']] for e in train}
  test_alphabets = {alphabets[e['alphabet']] for e in test}
  assert len(train_alphabets) == 4 and len(test_alphabets) == 2
  assert test_alphabets <= set(fg.EVALUATION) and not train_alphabets & set(fg.EVALUATION)
  train_labels, test_labels = {e['label'] for e in train}, {e['label'] for e in test}
  assert train_labels == set(range(32)) and test_labels == set(range(32, 48))
  # One character per label, each with 10 examples.
  for examples in (train, test):
    by_label = {}
    for e in examples:
      by_label.setdefault(e['label'], set()).add(int(e['character']))
    assert all(len(c) == 1 for c in by_label.values())
    assert np.all(np.bincount([e['label'] for e in examples])[min(by_label):] == 10)


def test_examples_are_distorted_glyphs_of_their_character(splits):
  for example in splits['train'][:40] + splits['test'][:40]:
    image = example['image']
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8
    ink = image[..., 0] > 128
    assert 10 < ink.sum() < 500
    assert example['font'] in fg.covering_fonts(int(example['character']))
  # The examples of one class differ (fonts and distortions), and match their undistorted glyph
  # better than other classes' glyphs do, on average.
  train = splits['train']
  first = [e['image'][..., 0].astype(float) for e in train if e['label'] == 0]
  assert all(not np.array_equal(first[0], other) for other in first[1:])
  classes = fg.classes((4, 2), 8)
  references = np.stack([fg.canonical(cp, fonts[0]).ravel() for _, cp, fonts in classes[:32]])
  references = (references - references.mean(1, keepdims=True)) / references.std(1, keepdims=True)
  hits = 0
  for e in train:
    x = e['image'][..., 0].astype(float).ravel()
    hits += np.argmax(references @ ((x - x.mean()) / x.std())) == e['label']
  # Pixel template matching under the distortions: 44% when written; chance is 1/32.
  assert hits / len(train) > 0.3


def test_no_two_classes_look_alike():
  classes = fg.classes((4, 2), 8)
  images = np.stack([fg.canonical(cp, fonts[0]).ravel() for _, cp, fonts in classes])
  images = (images - images.mean(1, keepdims=True)) / images.std(1, keepdims=True)
  correlation = images @ images.T / images.shape[1]
  np.fill_diagonal(correlation, 0)
  assert correlation.max() <= fg.DUPLICATE_CORRELATION


def test_generation_is_a_pure_function_of_seed_and_position():
  classes = fg.classes((4, 2), 8)
  a, b = list(fg.generate(classes, [3], 2, 0)), list(fg.generate(classes, [3], 2, 0))
  c = list(fg.generate(classes, [3], 2, 1))
  np.testing.assert_array_equal(a[1]['image'], b[1]['image'])
  assert not np.array_equal(a[1]['image'], c[1]['image'])


def test_class_batches_are_class_major_and_resume(splits):
  images = np.stack([e['image'] for e in splits['train']])
  labels = np.array([e['label'] for e in splits['train']])
  source = episodes.ClassBatches(images, labels, ways=5, per_class=3, seed=0)
  batch = source[7]
  assert batch['image'].shape == (15, 28, 28, 1)
  per_class = batch['label'].reshape(5, 3)
  assert np.all(per_class == per_class[:, :1]) and len(set(per_class[:, 0])) == 5
  np.testing.assert_array_equal(batch['class_index'], np.repeat(np.arange(5), 3))
  rows = source.indices(7)
  assert all(len(set(r)) == 3 for r in rows)  # no example twice in a class
  iterator = episodes.class_batches(images, labels, ways=5, per_class=3, seed=0)
  next(iterator)
  state = iterator.get_state()
  expected = next(iterator)
  resumed = episodes.class_batches(images, labels, ways=5, per_class=3, seed=0)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['label'], expected['label'])
  halves = [next(episodes.class_batches(images, labels, ways=5, per_class=4, seed=0,
                                        process_index=p, process_count=2)) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h['label'] for h in halves]),
                                episodes.ClassBatches(images, labels, 5, 4, 0)[0]['label'])
  with pytest.raises(ConfigError, match='only 32'):
    episodes.ClassBatches(images, labels, ways=33, per_class=1, seed=0)
  with pytest.raises(ConfigError, match='only 10'):
    episodes.ClassBatches(images, labels, ways=2, per_class=11, seed=0)
