"""The translation experiment: tiny pix2pix, SPADE and CycleGAN runs end to end, the L1-only
ablation trains no discriminator, and the CycleGAN round fills its image pools. The runs use one
device (they are not about sharding, which tests/train and the detection runs check on 8)."""
import jax
import numpy as np
import pytest
from PIL import Image

from experiments import segment, translate
from experiments.configs import segment as segment_configs
from experiments.configs import translate as configs
from jaxpapers import zoo
from jaxpapers.errors import ConfigError
from jaxpapers.train import checkpoint, devices, loop


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='module')
def segmenter_dir(data_dir, tmp_path_factory):
  """A fixed (barely trained) `unet_scenes` segmenter: 1 step of segment's tiny preset."""
  config = segment_configs.get_config('tiny')
  config.model = {'name': 'unet_scenes'}
  config.data.data_dir = data_dir
  config.evals = {}
  config.train.update(steps=1, eval_every=0, checkpoint_every=1)
  workdir = str(tmp_path_factory.mktemp('segmenter'))
  loop.train_and_evaluate(segment.Segment(config, devices.make_mesh(1)), workdir)
  return workdir


def _config(preset, data_dir):
  config = configs.get_config(preset)
  config.data.data_dir = data_dir
  for entry in config.evals.values():
    if 'dataset' in entry:
      entry.data_dir = data_dir
  return config


def test_tiny_pix2pix_logs_l1_segmentation_and_a_grid(data_dir, segmenter_dir, tmp_path):
  config = _config('tiny', data_dir)
  config.evals.label_to_image.segmenter_workdir = segmenter_dir
  results = loop.train_and_evaluate(translate.Translate(config, devices.make_mesh(1)), str(tmp_path))
  assert results['train_step_compilations'] == 1
  evaluation = results['eval']
  assert 0 < evaluation['l1'] < 1
  for name in ('miou', 'pixel_accuracy', 'real_pixel_accuracy', 'colour_intersection',
               'saturation', 'real_saturation'):
    assert 0 <= evaluation[f'label_to_image_{name}'] <= 1
  assert np.isfinite(evaluation['label_to_image_frechet_distance'])
  assert 'g_gan' in results['train'] and 'discriminator_loss' in results['train']
  grid = np.asarray(Image.open(tmp_path / 'samples' / 'step_2.png'))
  assert grid.shape == (2 * (3 * 65 + 1), 2 * (4 * 65 + 1), 3)  # rows: labels, outputs, targets


def test_l1_only_trains_no_discriminator(data_dir, tmp_path):
  config = _config('tiny', data_dir)
  config.translate.gan_weight = 0.0
  del config.evals['label_to_image']
  experiment = translate.Translate(config, devices.make_mesh())
  state = experiment.init(jax.random.PRNGKey(0))
  batch = next(iter(experiment.data.eval_batches(8)))
  new_state, metrics = jax.jit(experiment.train_step)(state, batch)
  assert 'g_gan' not in metrics and 'discriminator_loss' not in metrics
  jax.tree.map(np.testing.assert_array_equal, new_state.players['discriminator'].params,
               state.players['discriminator'].params)
  # L1 alone: the loss is 100 times the mean absolute error.
  np.testing.assert_allclose(metrics['loss'], 100.0 * metrics['g_l1'], rtol=1e-6)


def test_tiny_spade_round_uses_hinge_feature_matching_and_vgg(data_dir, loss_network_dir):
  config = _config('tiny_spade', data_dir)
  config.perceptual.update(model=dict(name='vgg19_bn_mini', width_divisor=16),
                           init_from=loss_network_dir)
  experiment = translate.Translate(config, devices.make_mesh())
  state = experiment.init(jax.random.PRNGKey(0))
  batch = next(iter(experiment.data.eval_batches(8)))
  new_state, metrics = jax.jit(experiment.train_step)(state, batch)
  assert metrics['g_feature_matching'] > 0 and metrics['g_vgg'] > 0
  assert np.isfinite(metrics['discriminator_loss'])
  np.testing.assert_allclose(
      metrics['loss'],
      metrics['g_gan'] + 10.0 * metrics['g_feature_matching'] + 10.0 * metrics['g_vgg'], rtol=1e-5)
  assert int(new_state.step) == 1
  # Spectral norm's vectors u are model state, and move in each player's own update.
  def vectors(s, player):
    stats = s.players[player].model_state['batch_stats']
    return {jax.tree_util.keystr(path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(stats)
            if jax.tree_util.keystr(path).endswith("kernel/u']")}

  for player in ('generator', 'discriminator'):
    before, after = vectors(state, player), vectors(new_state, player)
    assert before and all(not np.allclose(before[k], after[k]) for k in before), player
  assert set(new_state.players['discriminator'].model_state['batch_stats']) == {'scale_0',
                                                                                'scale_1'}


def test_tiny_cyclegan_fills_its_pools_and_measures_domains(data_dir, tmp_path):
  config = _config('tiny_cyclegan', data_dir)
  results = loop.train_and_evaluate(translate.Translate(config, devices.make_mesh(1)), str(tmp_path))
  # 2 rounds of 8 images each into pools of 50 (the state is checkpointed with them).
  buffers = checkpoint.load_state(str(tmp_path))['buffers']
  assert int(buffers['pool_a']['count']) == 16 and int(buffers['pool_b']['count']) == 16
  train = results['train']
  assert train['loss'] > 10.0 * train['g_cycle'] > 0
  evaluation = results['eval']
  assert evaluation['cycle_error'] > 0 and 0 < evaluation['l1_ab'] < 1
  assert evaluation['domain_real_domain_accuracy'] == 1.0
  assert 0 <= evaluation['domain_domain_accuracy_ab'] <= 1


def test_presets_name_zoo_networks_and_the_right_data():
  for preset in ('pix2pix', 'pix2pix_l1_only', 'spade', 'cyclegan'):
    config = configs.get_config(preset)
    zoo.get(config.generator.name), zoo.get(config.discriminator.name)
  config = configs.get_config('cyclegan')
  config.data.preprocess = 'label_to_image'
  with pytest.raises(ConfigError, match='unpaired'):
    translate.Translate(config, devices.make_mesh())


def test_spade_needs_the_multiscale_discriminator(data_dir):
  config = _config('tiny_spade', data_dir)
  config.discriminator = {'name': 'patchgan_70_small'}
  with pytest.raises(ConfigError, match='MultiscaleDiscriminator'):
    translate.Translate(config, devices.make_mesh())
