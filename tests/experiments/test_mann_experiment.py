"""One-shot episodes (Santoro et al. 2016) and the MANN experiment run in-process."""

import json

import numpy as np
import pytest

from experiments import mann
from experiments.configs import mann as configs
from jaxpapers.data import one_shot_episodes, pipeline
from jaxpapers.train import devices, loop


def test_episodes_shuffle_labels_and_count_occurrences():
  classes = [np.full((12, 64), c, np.float32) for c in range(7)]  # The image names its class.
  episodes = one_shot_episodes.Episodes(classes, size=4, seed=0, num_classes=5, per_class=10)
  first, second = episodes[0], episodes[1]
  np.testing.assert_array_equal(episodes[0]['inputs'], first['inputs'])  # Pure in (seed, i).
  mappings = []
  for ep in (first, second):
    assert ep['inputs'].shape == (50, 64) and sorted(np.bincount(ep['labels'])) == [10] * 5
    mapping = {}
    for image, label in zip(ep['inputs'], ep['labels']):
      mapping.setdefault(label, image[0])
      assert mapping[label] == image[0]  # One class per label within an episode.
    for label in range(5):
      np.testing.assert_array_equal(ep['occurrence'][ep['labels'] == label], np.arange(1, 11))
    mappings.append(mapping)
  assert mappings[0] != mappings[1]  # A new class-to-label mapping each episode.


@pytest.fixture(scope='module')
def glyphs_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))  # font_glyphs_tiny is built here once.


def test_glyph_classes_are_the_split_characters_at_20x20(glyphs_dir):
  directory = glyphs_dir
  train = one_shot_episodes.glyph_classes('font_glyphs_tiny', 'train', directory)
  test = one_shot_episodes.glyph_classes('font_glyphs_tiny', 'test', directory)
  assert len(train) == 32 and len(test) == 16  # font_glyphs_tiny: 4 + 2 alphabets of 8.
  assert all(c.shape == (10, 400) and c.dtype == np.float32 for c in train + test)
  assert all(c.min() >= 0.0 and c.max() <= 1.0 for c in train + test)
  rows = pipeline.in_memory(pipeline.load_source('font_glyphs_tiny', 'train', directory))
  first = np.stack([r['image'][..., 0] for r in rows if r['label'] == 0]) / 255.0
  # Downscaling keeps each image's ink: the mean intensity of 28x28 and 20x20 agree.
  np.testing.assert_allclose(train[0].mean(1), first.reshape(10, -1).mean(1), atol=0.02)


@pytest.mark.parametrize('preset', ['tiny', 'tiny_glyphs'])
def test_tiny_run_reports_accuracy_by_occurrence(tmp_path, preset, glyphs_dir):
  config = configs.get_config(preset)
  config.data.data_dir = glyphs_dir
  results = loop.train_and_evaluate(mann.OneShotEpisodes(config, devices.make_mesh()),
                                    str(tmp_path))
  saved = json.loads((tmp_path / 'results.json').read_text())['eval']
  assert set(saved) == {'accuracy', 'accuracy_1', 'accuracy_2', 'accuracy_3'}
  assert np.isclose(np.mean([saved[f'accuracy_{k}'] for k in (1, 2, 3)]), saved['accuracy'])
  assert results['train_step_compilations'] == 1
