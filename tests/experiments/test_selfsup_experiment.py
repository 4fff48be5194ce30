"""The self-supervised experiment: MoCo's tiny run end to end on 8 devices (queue, key encoder,
probes, k-NN), and every method's train step traced on its tiny preset."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import selfsup
from experiments.configs import selfsup as configs
from jaxpapers.data import pipeline
from jaxpapers.errors import ConfigError
from jaxpapers.train import checkpoint, devices, loop, metrics


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tfds'))
  pipeline.load_source('shapes_captions_tiny', 'train', directory)  # builds every split
  return directory


def tiny_config(data_dir, method='moco'):
  config = configs.get_config(f'{method}_tiny')
  config.data.data_dir = data_dir
  return config


def test_moco_tiny_run_end_to_end_on_eight_devices(data_dir, tmp_path):
  assert jax.device_count() == 8
  config = tiny_config(data_dir)
  # Crops, flips and grey-scale only: colour jitter and blur compile slowly on a CPU and have their
  # own tests (tests/data/test_augment.py, tests/selfsup/test_views.py).
  config.views.update(jitter_strength=0.0, blur_prob=(0.0, 0.0))
  experiment = selfsup.SelfSupervised(config, devices.make_mesh())
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train_step_compilations'] == 1
  steps, losses = metrics.read_history(str(tmp_path), 'train/')['loss']
  np.testing.assert_array_equal(steps, [3, 6])
  assert np.all(np.isfinite(losses))
  evaluation = results['eval']
  names = {f'{e}_{s}_{t}' for e in ('probe', 'knn', 'random_probe', 'random_knn')
           for s in ('val',) for t in ('shape', 'colour')}
  assert set(evaluation) == names and all(0.0 <= v <= 1.0 for v in evaluation.values())
  # The saved state: 6 batches of 32 keys went through the queue of 64 (pointer 192 mod 64 = 0),
  # every key normalised; the key encoder lags the query encoder.
  state = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  _, saved, _ = checkpointer.restore_latest(state)
  checkpointer.close()
  queue = saved.buffers['queue']
  assert int(queue.pointer) == (6 * 32) % 64
  np.testing.assert_allclose(np.linalg.norm(queue.items, axis=1), 1.0, rtol=1e-5)
  online = saved.players['online']
  initial = experiment._initial_state.players['online'].params
  moved = jax.tree.map(lambda p, e, i: float(jnp.abs(p - i).sum()) > float(jnp.abs(e - i).sum()),
                       online.params, online.ema_params, initial)
  assert all(jax.tree.leaves(moved))


@pytest.mark.parametrize('method', [m for m in configs.METHODS if m != 'moco'])
def test_every_method_traces_a_train_step_on_its_tiny_preset(data_dir, method):
  """Traced only (compiling each method's views and networks is slow on a CPU)."""
  experiment = selfsup.SelfSupervised(tiny_config(data_dir, method), devices.make_mesh())
  state = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  batch = {'image': jax.ShapeDtypeStruct((32, 32, 32, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((32,), jnp.int32)}
  new_state, step_metrics = jax.eval_shape(experiment.train_step, state, batch)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  assert 'loss' in step_metrics
  online = state.players['online']
  assert (online.ema_params is not None) == (method == 'byol')
  assert ('predictor' in online.params) == (method in ('byol', 'simsiam'))
  assert ('prototypes' in online.params) == (method == 'swav')
  assert ('classifier' in online.params) == (method == 'supervised')


def test_unknown_method_is_one_clear_error(data_dir):
  config = tiny_config(data_dir)
  config.method = 'dino'
  with pytest.raises(ConfigError, match='valid: simclr, moco, byol, simsiam, swav'):
    selfsup.SelfSupervised(config, devices.make_mesh())
