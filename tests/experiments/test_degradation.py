"""The degradation experiment of He et al. 2015 (arXiv:1512.03385, Figure 6) and the CIFAR presets."""

import json

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import classify, degradation
from experiments.configs import classify as classify_configs
from experiments.configs import degradation as configs
from jaxpapers.train import devices, loop
from jaxpapers.train import metrics as metrics_lib


def _distortion(**kwargs):
  d = dict(rotation_degrees=0.0, scale=0.0, shear=0.0, translation=0.0, noise_std=0.0)
  d.update(kwargs)
  return ml_collections.ConfigDict(d)


def _blob(size=15):
  """A smooth rotationally symmetric image about the pixel centre, (size - 1) / 2; its radii."""
  r = np.arange(size) - (size - 1) / 2
  radius = np.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
  return np.exp(-radius ** 2 / 32.0).astype(np.float32)[None, :, :, None], radius


def test_random_affine_without_distortion_is_the_identity():
  images = np.random.default_rng(0).uniform(size=(3, 8, 8, 2)).astype(np.float32)
  out = degradation.random_affine(images, jax.random.PRNGKey(0), _distortion())
  np.testing.assert_allclose(out, images, atol=1e-6)


def test_random_affine_rotates_about_the_centre():
  # A symmetric blob survives any rotation about the centre (up to bilinear error); a shift of up
  # to a pixel and heavy noise do not leave it alone.
  blob, radius = _blob()
  blob = np.repeat(blob, 4, axis=0)
  key = jax.random.PRNGKey(1)
  rotated = degradation.random_affine(blob, key, _distortion(rotation_degrees=180.0))
  inside = radius <= 7  # The corners rotate in from outside the image, as zeros.
  np.testing.assert_allclose(rotated[:, inside], blob[:, inside], atol=0.02)
  shifted = degradation.random_affine(blob, key, _distortion(translation=1.0))
  assert np.abs(shifted - blob).max() > 0.1
  noisy = degradation.random_affine(blob, key, _distortion(noise_std=0.5))
  assert 0.0 <= float(noisy.min()) and float(noisy.max()) <= 1.0  # clipped to the image range
  assert np.abs(noisy - blob).mean() > 0.1


def _fake_run(workdir, accuracies, test_accuracy):
  writer = metrics_lib.MetricWriter(str(workdir))
  for step, accuracy in enumerate(accuracies, start=1):
    writer.scalars(10 * step, {'accuracy': accuracy, 'loss': 1.0}, prefix='train/')
  writer.scalars(10 * len(accuracies), {'accuracy': test_accuracy, 'loss': 1.0}, prefix='eval/')
  writer.close()
  return str(workdir)


def test_summary_compares_the_deeper_network_with_the_shallower(tmp_path):
  ramp = np.linspace(0.1, 0.6, 10)  # The last fifth: its last two points, mean 0.5722...
  workdirs = {m: _fake_run(tmp_path / m, ramp + shift, 0.9)
              for m, shift in (('plain20', 0.3), ('plain56', 0.1), ('resnet20', 0.2),
                               ('resnet56', 0.25))}
  results = {m: {'wall_time_s': 1.0} for m in workdirs}
  summary = degradation.summarize(workdirs, results)
  last_fifth = 1.0 - np.mean(ramp[-2:])
  np.testing.assert_allclose(summary['models']['plain20']['train_error_last_fifth'],
                             last_fifth - 0.3)
  assert summary['models']['plain56']['test_error'] == pytest.approx(0.1)
  assert summary['models']['plain56']['steps'] == 100
  differences = summary['deeper_minus_shallower_train_error']
  assert (differences['plain']['deeper'], differences['plain']['shallower']) == ('plain56',
                                                                                  'plain20')
  np.testing.assert_allclose(differences['plain']['difference'], 0.2)  # plain56 trains worse
  np.testing.assert_allclose(differences['residual']['difference'], -0.05)
  path = degradation.plot(workdirs, str(tmp_path / 'figure.png'), smoothing=3)
  assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_smooth_is_a_trailing_mean():
  np.testing.assert_allclose(degradation.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2),
                             [1.0, 2.0, 4.0, 6.0])


def test_tiny_run_trains_and_draws_the_figure(digits_dir, tmp_path):
  config = configs.get_config('tiny')
  config.data.data_dir = digits_dir
  summary = degradation.run(config, str(tmp_path), devices.make_mesh(1))
  assert list(summary['models']) == ['resnet20']
  steps, error = degradation.error_curves(str(tmp_path / 'resnet20'))['train']
  np.testing.assert_array_equal(steps, [1, 2, 3, 4])
  assert np.all((0.0 <= error) & (error <= 1.0))
  results = json.loads((tmp_path / 'resnet20' / 'results.json').read_text())
  assert results['config']['model']['name'] == 'resnet20' and results['step'] == 4
  saved = json.loads((tmp_path / 'summary.json').read_text())
  assert saved['plot'].endswith('training_error.png')
  assert (tmp_path / 'training_error.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_cifar10_presets_follow_the_papers():
  for name, model, decay, nesterov in (('cifar10_resnet20', 'resnet20', 1e-4, False),
                                       ('cifar10_resnet56', 'resnet56', 1e-4, False),
                                       ('cifar10_wrn_28_10', 'wrn_28_10', 5e-4, True)):
    c = classify_configs.get_config(name)
    assert c.model.name == model and c.data.name == 'cifar10' and not c.data.in_memory
    assert (c.data.augment.random_crop_padding, c.data.augment.random_flip) == (4, True)
    assert (c.optim.name, c.optim.learning_rate, c.optim.momentum) == ('momentum', 0.1, 0.9)
    assert (c.optim.weight_decay, c.optim.nesterov, c.train.batch_size) == (decay, nesterov, 128)


def test_cifar10_resnet20_preset_trains_on_mock_cifar(tmp_path):
  config = classify_configs.get_config('cifar10_resnet20')
  config.data.data_dir = str(tmp_path / 'tfds')
  config.train.update(steps=2, batch_size=4, log_every=1, eval_every=2, checkpoint_every=2)
  mesh = devices.make_mesh(1)
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    results = loop.train_and_evaluate(classify.Classify(config, mesh), str(tmp_path / 'run'))
  assert results['step'] == 2 and np.isfinite(results['train']['loss'])
  assert 0.0 <= results['eval']['accuracy'] <= 1.0
