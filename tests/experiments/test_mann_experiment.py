"""One-shot episodes (Santoro et al. 2016) and the MANN experiment run in-process."""

import json

import numpy as np

from experiments import mann
from experiments.configs import mann as configs
from jaxpapers.data import one_shot_episodes
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


def test_tiny_run_reports_accuracy_by_occurrence(tmp_path):
  config = configs.get_config('tiny')
  results = loop.train_and_evaluate(mann.OneShotEpisodes(config, devices.make_mesh()),
                                    str(tmp_path))
  saved = json.loads((tmp_path / 'results.json').read_text())['eval']
  assert set(saved) == {'accuracy', 'accuracy_1', 'accuracy_2', 'accuracy_3'}
  assert np.isclose(np.mean([saved[f'accuracy_{k}'] for k in (1, 2, 3)]), saved['accuracy'])
  assert results['train_step_compilations'] == 1
