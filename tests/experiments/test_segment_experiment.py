"""The segmentation experiment: a tiny run end to end on 8 devices, with the mIoU evaluator."""

import jax
import numpy as np
import pytest

from experiments import segment
from experiments.configs import segment as configs
from jaxpapers.data import pipeline
from jaxpapers.train import devices, loop, metrics


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  pipeline.load_source('scenes_tiny', 'train', directory)  # builds every split
  return directory


def test_tiny_run_end_to_end_on_eight_devices(data_dir, tmp_path):
  assert jax.device_count() == 8
  config = configs.get_config('tiny')
  config.data.data_dir = config.evals.miou.data_dir = data_dir
  results = loop.train_and_evaluate(segment.Segment(config, devices.make_mesh()), str(tmp_path))
  assert results['train_step_compilations'] == 1
  steps, losses = metrics.read_history(str(tmp_path), 'train/')['loss']
  np.testing.assert_array_equal(steps, [3, 6])
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  evaluation = results['eval']
  assert 0.0 <= evaluation['miou_miou'] <= 1.0 and 0.0 <= evaluation['pixel_accuracy'] <= 1.0
  assert {f'miou_iou_{c}' for c in ('background', 'circle', 'cross')} <= set(evaluation)


def test_every_preset_names_a_zoo_segmenter():
  from jaxpapers import zoo
  for preset in ('unet', 'fcn8s', 'segnet', 'fc_densenet', 'fpn'):
    assert configs.get_config(preset).model.name in zoo.names()
