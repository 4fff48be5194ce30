"""The detection experiment: tiny runs end to end on 8 devices, with the COCO box-AP evaluator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import detect
from experiments.configs import detect as configs
from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.train import checkpoint, devices, loop, metrics


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


def test_tiny_vild_run_with_a_clip_teacher_scores_base_and_novel_classes(data_dir, tmp_path):
  """ViLD end to end: a random tiny CLIP restored from a run directory as the teacher, training on
  the base classes with both ViLD losses, box AP on all, base and novel classes."""
  teacher = zoo.build('clip_shapes_tiny')
  variables = teacher.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)),
                           jnp.zeros((1, teacher.context_length), jnp.int32))
  saver = checkpoint.Checkpointer(str(tmp_path / 'clip'))
  saver.save(0, {'params': variables['params']}, {})
  saver.close()
  config = configs.get_config('tiny_vild')
  config.data.data_dir = config.evals.box_map.data_dir = data_dir
  config.vild.clip_workdir = str(tmp_path / 'clip')
  experiment = detect.Detect(config, devices.make_mesh())
  assert experiment.text_embeddings.shape == (5, 16)
  np.testing.assert_array_equal(experiment.class_valid, [True, True, True, False, False])
  results = loop.train_and_evaluate(experiment, str(tmp_path / 'vild'))
  assert results['train_step_compilations'] == 1
  history = metrics.read_history(str(tmp_path / 'vild'), 'train/')
  for term in ('loss', 'text', 'image', 'box', 'rpn_objectness'):
    assert np.all(np.isfinite(history[term][1])), term
  assert np.all(history['image'][1] > 0)  # the teacher's targets are not the student's embeddings
  evaluation = results['eval']
  for name in ('box_map_ap', 'box_map_base_ap', 'box_map_novel_ap'):
    assert 0.0 <= evaluation[name] <= 1.0, name  # -1 would mean no ground truth in the subset


def test_every_preset_names_a_zoo_detector():
  from jaxpapers import zoo
  for preset in ('ssd_scenes', 'detr_scenes', 'deformable_detr_scenes', 'maskrcnn_scenes',
                 'retinanet_scenes', 'retinanet_bvr_scenes', 'vild_scenes',
                 'fasterrcnn_base_scenes'):
    config = configs.get_config(preset)
    assert config.model.name in zoo.names() and config.detector in detect.DETECTORS
  tiny = configs.get_config('tiny_detr')
  assert zoo.build_from_config(tiny.model).config.d_model == 16
