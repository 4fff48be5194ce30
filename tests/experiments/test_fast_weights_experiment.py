"""The associative-retrieval experiment of Ba et al. 2016 (arXiv:1610.06258) run in-process."""

import json

import chex
import jax
import numpy as np
import pytest

from experiments import fast_weights
from experiments.configs import fast_weights as configs
from jaxpapers import zoo
from jaxpapers.data import associative_retrieval as ar
from jaxpapers.errors import ConfigError
from jaxpapers.train import checkpoint, devices, loop, metrics


def run(workdir, steps=40, mesh=None):
  config = configs.get_config('tiny')
  config.train.steps = steps
  experiment = fast_weights.FastWeightsRetrieval(config, mesh or devices.make_mesh())
  return loop.train_and_evaluate(experiment, str(workdir))


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """The tiny preset's 40 steps on the 8-device mesh, uninterrupted."""
  assert jax.device_count() == 8
  workdir = tmp_path_factory.mktemp('straight')
  return workdir, run(workdir)


def test_tiny_run_learns_and_reports_test_error(straight):
  workdir, results = straight
  assert results['train_step_compilations'] == 1
  saved = json.loads((workdir / 'results.json').read_text())
  assert set(saved['eval']) == {'validation_error', 'validation_loss', 'test_error', 'test_loss'}
  assert 0.0 <= saved['eval']['test_error'] < 0.9  # Chance is 0.9 (10 digits).
  steps, losses = metrics.read_history(workdir, 'train/')['loss']
  np.testing.assert_array_equal(steps, [5, 10, 15, 20, 25, 30, 35, 40])
  assert losses[0] > 2.2 and losses[-1] < 0.9 * losses[0], losses  # From about ln 10 = 2.30.
  steps, errors = metrics.read_history(workdir, 'eval/')['test_error']
  np.testing.assert_array_equal(steps, [20, 40])
  np.testing.assert_allclose(errors[-1], saved['eval']['test_error'], rtol=1e-6)


def test_each_split_metric_is_that_split_mean(straight):
  # 64 validation and 100 test sequences in batches of 32: the last batch is padding-masked.
  workdir, results = straight
  config = configs.get_config('tiny')
  experiment = fast_weights.FastWeightsRetrieval(config, devices.make_mesh())
  params = checkpoint.load_params(workdir)
  d = config.data
  splits = ar.make_splits(d.seed, d.num_pairs, {'train': d.train_size,
                                                'validation': d.validation_size,
                                                'test': d.test_size})
  for name in ('validation', 'test'):
    logits = experiment.model.apply({'params': params}, splits[name]['tokens'])
    error = np.mean(np.argmax(logits, -1) != splits[name]['label'])
    np.testing.assert_allclose(results['eval'][f'{name}_error'], error, rtol=1e-5)


def test_resume_on_one_device_equals_uninterrupted_run(straight, tmp_path):
  run(tmp_path, steps=20)  # Saved on 8 devices, data position included.
  run(tmp_path, steps=40, mesh=devices.make_mesh(1))
  chex.assert_trees_all_close(checkpoint.load_params(tmp_path), checkpoint.load_params(straight[0]),
                              rtol=1e-5, atol=1e-6)


def test_every_table1_preset_exists():
  for cell in ('fast_weights', 'irnn', 'lstm', 'associative_lstm'):
    for size in (20, 50, 100):
      config = configs.get_config(f'{cell}_r{size}')
      model = zoo.build_from_config(config.model)
      assert (model.cell, model.hidden_size, model.decay) == (cell, size, 0.95)
      assert (config.optim.name, config.train.batch_size) == ('adam', 128)


@pytest.mark.parametrize('cell, size, message', [
    ('gru', 20, 'valid: fast_weights, irnn, lstm, associative_lstm'),
    ('associative_lstm', 21, 'even number of units'),
])
def test_bad_model_config_is_one_clear_error(cell, size, message):
  config = configs.get_config('tiny')
  config.model.update(cell=cell, hidden_size=size)
  with pytest.raises(ConfigError, match=message):
    fast_weights.FastWeightsRetrieval(config, devices.make_mesh())
