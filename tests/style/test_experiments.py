"""Tiny end-to-end runs of experiments/style_transfer.py and experiments/super_resolution.py (on one
device: they are not about sharding, which tests/train and the detection runs check on 8)."""

import jax
import numpy as np
from PIL import Image

from experiments import style_transfer, super_resolution
from experiments.configs import style_transfer as style_configs
from experiments.configs import super_resolution as sr_configs
from jaxpapers.train import devices, loop

LOSS_NETWORK = dict(name='vgg19_bn_mini', width_divisor=16)  # conftest's loss_network_dir


def _with_loss_network(config, directory):
  config.perceptual.update(model=LOSS_NETWORK, init_from=directory, train_preset='')
  return config


def test_gatys_optimises_the_image(loss_network_dir, tmp_path):
  config = _with_loss_network(style_configs.get_config('tiny_gatys'), loss_network_dir)
  config.train.steps = 3
  experiment = style_transfer.StyleTransfer(config, devices.make_mesh(1))
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train_step_compilations'] == 1
  evaluation = results['eval']
  # Started from the photograph (content loss 0): L-BFGS moved the image and lowered the objective.
  photo_total, photo_terms = experiment.gatys(experiment.content)
  assert photo_terms['content_loss'] == 0 and evaluation['gatys_content_loss'] > 0
  assert evaluation['gatys_total'] < 0.9 * float(photo_total)
  grid = np.asarray(Image.open(tmp_path / 'samples' / 'step_3.png'))
  assert grid.shape[0] == 2 * (32 + 2)  # one row: content, style, result, enlarged twice


def test_johnson_trains_the_network(loss_network_dir, tmp_path):
  config = _with_loss_network(style_configs.get_config('tiny_johnson'), loss_network_dir)
  experiment = style_transfer.StyleTransfer(config, devices.make_mesh(1))
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train_step_compilations'] == 1
  for key in ('johnson_content_loss', 'johnson_style_loss', 'gatys_total'):
    assert np.isfinite(results['eval'][key])
  assert results['train']['style_loss'] > 0


def test_srresnet_mse_then_srgan_from_it(loss_network_dir, tmp_path):
  mse = _with_loss_network(sr_configs.get_config('tiny'), loss_network_dir)
  mse.sr.update(content='mse', adversarial_weight=0.0)
  results = loop.train_and_evaluate(super_resolution.SuperResolution(mse, devices.make_mesh(1)),
                                    str(tmp_path / 'mse'))
  evaluation = results['eval']
  assert 'discriminator_loss' not in results['train']
  # Bicubic on 8x8 -> 32x32 shapes is a fair baseline: tens of dB, SSIM in (0, 1).
  assert 10 < evaluation['bicubic_psnr'] < 40 and 0 < evaluation['bicubic_ssim'] < 1
  assert np.isfinite(evaluation['sr_psnr'])
  grid = np.asarray(Image.open(tmp_path / 'mse' / 'samples' / 'step_2.png'))
  assert grid.shape[:2] == (2 * 33 + 1, 4 * 33 + 1)  # rows of LR, bicubic, output, HR

  gan = _with_loss_network(sr_configs.get_config('tiny'), loss_network_dir)
  gan.sr.generator_init = str(tmp_path / 'mse')
  experiment = super_resolution.SuperResolution(gan, devices.make_mesh(1))
  state = jax.jit(experiment.init)(jax.random.key(1))
  saved = experiment.generator_init['params']['conv_in']['kernel']
  np.testing.assert_array_equal(state.players['generator'].params['conv_in']['kernel'], saved)
  results = loop.train_and_evaluate(experiment, str(tmp_path / 'gan'))
  assert 0 < results['train']['d_real'] < 1
  assert results['train']['adversarial_loss'] > 0
