"""The detection experiment: tiny runs end to end on 8 devices, with the COCO box-AP evaluator."""

import jax
import numpy as np
import pytest

from experiments import detect
from experiments.configs import detect as configs
from jaxpapers.data import pipeline
from jaxpapers.train import devices, loop, metrics


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  pipeline.load_source('scenes_tiny', 'train', directory)  # builds every split
  return directory


# The set-prediction path (Hungarian matching inside the sharded step), the two-stage path
# (sampling from the step's key, box and mask AP) and the dense path (RetinaNet with BVR:
# anchors, focal and keypoint losses, per-level top-k and NMS); tiny_ssd and tiny_retinanet
# run the same way (checked by hand), left out to keep the file short.
@pytest.mark.parametrize('preset', ['tiny_deformable_detr', 'tiny_maskrcnn', 'tiny_retinanet_bvr'])
def test_tiny_run_end_to_end_on_eight_devices(preset, data_dir, tmp_path):
  assert jax.device_count() == 8
  config = configs.get_config(preset)
  config.data.data_dir = config.evals.box_map.data_dir = data_dir
  results = loop.train_and_evaluate(detect.Detect(config, devices.make_mesh()), str(tmp_path))
  assert results['train_step_compilations'] == 1
  steps, losses = metrics.read_history(str(tmp_path), 'train/')['loss']
  np.testing.assert_array_equal(steps, [2, 4])
  assert np.all(np.isfinite(losses))
  evaluation = results['eval']
  assert np.isfinite(evaluation['loss'])
  assert 0.0 <= evaluation['box_map_ap50'] <= 1.0 and 0.0 <= evaluation['box_map_ap'] <= 1.0
  if preset == 'tiny_maskrcnn':
    assert 0.0 <= evaluation['box_map_mask_ap50'] <= 1.0


def test_every_preset_names_a_zoo_detector():
  from jaxpapers import zoo
  for preset in ('ssd_scenes', 'detr_scenes', 'deformable_detr_scenes', 'maskrcnn_scenes',
                 'retinanet_scenes', 'retinanet_bvr_scenes'):
    config = configs.get_config(preset)
    assert config.model.name in zoo.names() and config.detector in detect.DETECTORS
  tiny = configs.get_config('tiny_detr')
  assert zoo.build_from_config(tiny.model).config.d_model == 16
