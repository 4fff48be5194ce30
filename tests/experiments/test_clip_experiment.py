"""The CLIP experiment: a tiny run end to end on 8 devices, the ResNet tower's state, the probe."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import clip as clip_experiment
from experiments.configs import clip as clip_configs
from jaxpapers.contrastive import clip
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.train import devices, loop, metrics


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  pipeline.load_source('shapes_captions_tiny', 'train', directory)  # builds every split
  return directory


def tiny_config(data_dir, preset='tiny'):
  config = clip_configs.get_config(preset)
  config.data.data_dir = data_dir
  return config


def test_tiny_run_end_to_end_on_eight_devices(data_dir, tmp_path):
  assert jax.device_count() == 8
  experiment = clip_experiment.CLIPExperiment(tiny_config(data_dir), devices.make_mesh())
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train_step_compilations'] == 1
  history = metrics.read_history(str(tmp_path), 'train/')
  steps, losses = history['loss']
  np.testing.assert_array_equal(steps, [4, 8, 12])
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]  # It learns, even in 12 steps.
  np.testing.assert_allclose(history['temperature'][1] * history['logit_scale'][1], 1.0, rtol=1e-5)
  assert np.all(history['logit_scale'][1] <= clip.MAX_LOGIT_SCALE)
  evaluation = results['eval']
  accuracies = [k for k in evaluation if k.startswith(('zs_', 'probe_', 'random_probe_'))]
  assert len(accuracies) == 17 and all(0.0 <= evaluation[k] <= 1.0 for k in accuracies)
  assert {'loss', 'i2t_accuracy', 't2i_accuracy'} <= set(evaluation)
  with open(tmp_path / 'training_curves.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_resnet_tower_carries_batch_statistics_through_the_train_step(data_dir):
  """Traced only: compiling a ResNet's initialisers is slow on a CPU."""
  experiment = clip_experiment.CLIPExperiment(tiny_config(data_dir, 'tiny_resnet'),
                                              devices.make_mesh())
  state = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  assert 'attnpool' in state.params['visual'] and 'batch_stats' in state.model_state
  batch = {'image': jax.ShapeDtypeStruct((32, 32, 32, 3), jnp.uint8),
           'tokens': jax.ShapeDtypeStruct((32, 16), jnp.int32)}
  new_state, step_metrics = jax.eval_shape(experiment.train_step, state, batch)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  assert set(step_metrics) == {'loss', 'logit_scale', 'temperature', 'accuracy'}


def test_bad_dataset_or_loss_is_one_clear_error(data_dir):
  config = tiny_config(data_dir)
  config.data.name = 'sklearn_digits'
  with pytest.raises(ConfigError, match='valid: shapes_captions, shapes_captions_tiny'):
    clip_experiment.CLIPExperiment(config, devices.make_mesh())
  config = tiny_config(data_dir)
  config.loss_impl = 'pmap'
  with pytest.raises(ConfigError, match='valid: shard_map, jit'):
    clip_experiment.CLIPExperiment(config, devices.make_mesh())
