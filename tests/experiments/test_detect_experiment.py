"""The detection experiment: tiny runs end to end (8 devices; ViLD on one), with the COCO box-AP
evaluator; ViLD-image on proposals precomputed by scripts/vild_precompute.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import detect
from experiments.configs import detect as configs
from jaxpapers import zoo
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
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


def _save_run(workdir, variables):
  """A run directory whose checkpoint holds `variables` as a `TrainState` run saves them."""
  variables = dict(variables)
  saver = checkpoint.Checkpointer(workdir)
  saver.save(0, {'params': variables.pop('params'), 'model_state': variables}, {})
  saver.close()


def test_tiny_vild_on_precomputed_proposals_scores_base_and_novel_classes(
    data_dir, tmp_path, vild_precompute_script):
  """ViLD as the paper trains it, end to end on one device: a random tiny CLIP teacher and a
  random tiny two-stage detector restored from run directories; scripts/vild_precompute.py writes
  the detector's top-4 proposals of each scenes_tiny training image with CLIP's embeddings of
  their crops; ViLD trains on the base classes with both losses reading them, box AP on all,
  base and novel classes."""
  teacher = zoo.build('clip_shapes_tiny')
  _save_run(str(tmp_path / 'clip'), teacher.init(
      jax.random.key(1), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, teacher.context_length), jnp.int32)))
  rcnn = configs.get_config('tiny_maskrcnn')
  rcnn.model.masks = False
  rcnn.data.data_dir = data_dir
  model = zoo.build_from_config(rcnn.model)
  variables = model.init(jax.random.key(2), jnp.zeros((1, 64, 64, 3)))
  _save_run(str(tmp_path / 'rcnn'), variables)

  out = str(tmp_path / 'proposals')
  result = vild_precompute_script.run(rcnn, str(tmp_path / 'rcnn'), 'clip_shapes_tiny',
                                      str(tmp_path / 'clip'), num_proposals=4, batch_size=48,
                                      out=out)
  boxes, embeddings = result['proposal_boxes'], result['proposal_embeddings']
  assert boxes.shape == (64, 4, 4) and embeddings.shape == (64, 4, 16)  # 64 = 48 + 16 padded
  assert result['proposal_valid'].all()
  assert np.all((boxes >= 0) & (boxes <= 64)) and np.all(boxes[..., 2:] > boxes[..., :2])
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)
  assert set(result['recall']) >= {'circle', 'diamond', 'base', 'novel', 'all'}
  assert all(0.0 <= r <= 1.0 for r in result['recall'].values())
  # Row i is example i's: the first stage run on training image 50 alone (second batch).
  image = pipeline.load_source('scenes_tiny', 'train', data_dir)[50]['image'][None] / 255.0
  _, rois, _ = model.apply(variables, image, method='inference_rois')
  np.testing.assert_allclose(boxes[50], rois[0, :4], atol=1e-4)

  config = configs.get_config('tiny_vild')
  config.data.data_dir = config.evals.box_map.data_dir = data_dir
  config.vild.update(clip_workdir=str(tmp_path / 'clip'), proposals=out)
  config.train.update(steps=2, log_every=1, eval_every=2, checkpoint_every=2)
  experiment = detect.Detect(config, devices.make_mesh(1))
  assert experiment.text_embeddings.shape == (5, 16)
  np.testing.assert_array_equal(experiment.class_valid, [True, True, True, False, False])
  np.testing.assert_array_equal(experiment.data.example()['proposal_embeddings'], embeddings[0])
  results = loop.train_and_evaluate(experiment, str(tmp_path / 'vild'))
  assert results['train_step_compilations'] == results['eval_step_compilations'] == 1
  history = metrics.read_history(str(tmp_path / 'vild'), 'train/')
  for term in ('loss', 'text', 'image', 'box', 'rpn_objectness'):
    assert np.all(np.isfinite(history[term][1])), term
  assert np.all(history['image'][1] > 0)  # the teacher's targets are not the student's embeddings
  evaluation = results['eval']
  for name in ('box_map_ap', 'box_map_base_ap', 'box_map_novel_ap'):
    assert 0.0 <= evaluation[name] <= 1.0, name  # -1 would mean no ground truth in the subset

  # The file must fit the data and the teacher.
  with pytest.raises(ConfigError, match='65 of'):
    detect.load_proposals(out, 'scenes_tiny', 65, 16)
  with pytest.raises(ConfigError, match='width 16'):
    detect.load_proposals(out, 'scenes_tiny', 64, 32)
  with pytest.raises(ConfigError, match='vild_precompute'):
    detect.load_proposals(str(tmp_path / 'nowhere'), 'scenes_tiny', 64, 16)


def test_every_preset_names_a_zoo_detector():
  from jaxpapers import zoo
  for preset in ('ssd_scenes', 'detr_scenes', 'deformable_detr_scenes', 'maskrcnn_scenes',
                 'retinanet_scenes', 'retinanet_bvr_scenes', 'vild_scenes',
                 'fasterrcnn_base_scenes'):
    config = configs.get_config(preset)
    assert config.model.name in zoo.names() and config.detector in detect.DETECTORS
  tiny = configs.get_config('tiny_detr')
  assert zoo.build_from_config(tiny.model).config.d_model == 16
