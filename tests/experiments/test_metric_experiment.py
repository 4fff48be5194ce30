"""The metric-learning experiment: each method's tiny run end to end on 8 devices, with the
few-shot and verification evaluators on the held-out classes."""

import numpy as np
import pytest

from experiments import metric
from experiments.configs import metric as configs
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.train import devices, loop


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  pipeline.load_source('font_glyphs_tiny', 'train', directory)
  return directory


@pytest.mark.parametrize('method', configs.METHODS)
def test_tiny_run_end_to_end(data_dir, tmp_path, method):
  config = configs.get_config(f'{method}_tiny')
  config.data.data_dir = data_dir
  results = loop.train_and_evaluate(metric.MetricLearning(config, devices.make_mesh()),
                                    str(tmp_path))
  assert results['train_step_compilations'] == 1 and np.isfinite(results['train']['loss'])
  evaluation = results['eval']
  expected = {f'few_shot_5way_{k}shot{s}' for k in (1, 2) for s in ('', '_ci95')}
  expected |= {'verification_accuracy', 'verification_accuracy_std', 'verification_auc'}
  assert set(evaluation) == expected
  assert all(0.0 <= evaluation[k] <= 1.0 for k in expected if 'ci95' not in k and 'std' not in k)


def test_batch_size_must_be_the_episode_size(data_dir):
  config = configs.get_config('protonet_tiny')
  config.data.data_dir = data_dir
  config.train.batch_size = 16
  with pytest.raises(ConfigError, match='episode.ways x episode.per_class = 32'):
    metric.MetricLearning(config, devices.make_mesh())
