"""The DDPM experiment: a tiny digits run end to end, and the CIFAR-10 presets on mock TFDS data."""
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from experiments import ddpm
from experiments.configs import ddpm as configs
from jaxpapers import evaluators, zoo
from jaxpapers.errors import ConfigError
from jaxpapers.train import devices, loop, metrics


def tiny_config(data_dir, preset='tiny'):
  config = configs.get_config(preset)
  config.data.data_dir = data_dir
  return config


def _random(rng, struct):
  """Random values for a float array's shape struct; zeros for the step and the key."""
  if np.issubdtype(struct.dtype, np.floating):
    return (0.1 * rng.standard_normal(struct.shape)).astype(struct.dtype)
  return np.zeros(struct.shape, struct.dtype)


def test_tiny_run_trains_evaluates_and_samples_from_the_ema(digits_dir, tmp_path):
  assert jax.device_count() == 8
  mesh = devices.make_mesh()
  experiment = ddpm.DDPM(tiny_config(digits_dir), mesh)
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train_step_compilations'] == 1
  # The zero-initialised output layer predicts eps = 0, an L_simple of E[eps^2] = 1 (+-0.01 on the
  # held-out set); six updates bring it down.
  assert results['eval']['loss'] < 0.97
  assert results['eval']['ema_loss'] != results['eval']['loss']
  grid = np.asarray(Image.open(tmp_path / 'samples' / 'step_6.png'))
  # 8 samples on a 3x3 grid of 8x8 images with 1-pixel borders, enlarged twice.
  assert grid.shape == (56, 56) and grid.std() > 0

  # The grid is drawn from the EMA parameters only. Random states (no compilation needed), on
  # the mesh like the loop's, so the compiled sampler is reused.
  rng = np.random.default_rng(0)
  abstract_state = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  state = jax.device_put(jax.tree.map(lambda s: _random(rng, s), abstract_state),
                         devices.replicated(mesh))
  other = jax.device_put(jax.tree.map(lambda s: _random(rng, s), abstract_state.params),
                         devices.replicated(mesh))

  grid_evaluator = evaluators.build(experiment.config.evals, experiment.evaluation_fns(),
                                    mesh)['samples']

  def grid_of(state, name):
    writer = metrics.MetricWriter(str(tmp_path / name))
    grid_evaluator(state, 0, writer)
    writer.close()
    return np.asarray(Image.open(tmp_path / name / 'samples' / 'step_0.png'))

  reference = grid_of(state, 'a')
  np.testing.assert_array_equal(grid_of(state.replace(params=other), 'b'), reference)
  assert np.any(grid_of(state.replace(ema_params=other), 'c') != reference)


def test_learned_variance_needs_its_sampler_variance(digits_dir):
  config = tiny_config(digits_dir)
  config.diffusion.learn_sigma = True
  with pytest.raises(ConfigError, match='learned_range'):
    ddpm.DDPM(config, devices.make_mesh())


def test_cifar10_presets_are_the_papers_networks():
  for preset, zoo_name in (('cifar10', 'ddpm_cifar10'), ('iddpm_cifar10', 'iddpm_cifar10')):
    config = configs.get_config(preset)
    assert config.model.name == zoo_name
    assert zoo.build(zoo_name).learn_sigma == config.diffusion.learn_sigma
  assert configs.get_config('iddpm_cifar10').diffusion.num_timesteps == 4000


def test_iddpm_cifar10_preset_runs_on_mock_cifar10(tmp_path):
  # The real-data path (TFDS source, on-device flips, L_hybrid, learned-variance sampling) with a
  # tiny network in place of the 52.5M one.
  config = tiny_config(str(tmp_path / 'tfds'), 'iddpm_cifar10')
  config.model.name = 'ddpm_tiny'
  config.sample.steps = 5
  config.evals.samples.num_images = 8
  config.train.update(steps=2, batch_size=16, log_every=1, eval_every=2, checkpoint_every=2)
  one_device = devices.make_mesh(1)  # compiles faster
  with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
    experiment = ddpm.DDPM(config, one_device)
    assert experiment.image_shape == (32, 32, 3)
    results = loop.train_and_evaluate(experiment, str(tmp_path / 'run'))
  train, evaluation = results['train'], results['eval']
  # L_hybrid = L_simple + lambda T L_t with T = 4000, lambda = 0.001 (per example, so on means).
  np.testing.assert_allclose(train['loss'], train['mse'] + 4.0 * train['vb'], rtol=1e-5)
  assert np.isfinite(evaluation['ema_vb']) and evaluation['vb'] > 0
  assert (tmp_path / 'run' / 'samples' / 'step_2.png').exists()
