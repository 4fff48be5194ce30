"""The GAN experiment: tiny runs end to end, the two-optimiser round, and label conditioning."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import classify, gan
from experiments.configs import gan as configs
from jaxpapers.errors import ConfigError
from jaxpapers.evaluators import sample_quality
from jaxpapers.train import checkpoint, devices, loop


@pytest.fixture(scope='module')
def classifier_dir(digits_dir, tmp_path_factory):
  """A fixed digits classifier: classify's tiny preset (an MLP, 20 steps)."""
  return classify.trained_classifier(str(tmp_path_factory.mktemp('classifier')), 'tiny', digits_dir)


def tiny_config(data_dir, classifier_dir=None, conditional=False):
  config = configs.get_config('tiny')
  config.data.data_dir = data_dir
  if classifier_dir:
    config.evals.quality = dict(
        type='sample_quality', fn='sample_labelled' if conditional else 'sample', num_samples=40,
        batch_size=40, classifier_model='digits_mlp', classifier_workdir=classifier_dir,
        data_dir=data_dir, conditional=conditional)
  return config


def test_tiny_run_logs_quality_and_a_sample_grid(digits_dir, classifier_dir, tmp_path):
  assert jax.device_count() == 8
  experiment = gan.GAN(tiny_config(digits_dir, classifier_dir), devices.make_mesh())
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train_step_compilations'] == 1
  evaluation = results['eval']
  assert np.isfinite(evaluation['quality_frechet_distance'])
  assert 1.0 <= evaluation['quality_classifier_score'] <= 10.0
  assert 1 <= evaluation['quality_classes_found'] <= 10
  assert 0 < results['train']['d_real'] < 1
  grid = np.asarray(Image.open(tmp_path / 'samples' / 'step_4.png'))
  assert grid.shape == (56, 56) and grid.std() > 0  # 8 images on a 3x3 grid, enlarged twice


def test_wgan_gp_round_runs_n_critic_updates(digits_dir, tmp_path):
  config = tiny_config(digits_dir)
  config.discriminator = dict(name='wgan_gp_digits_critic', hidden=(16,))
  config.gan.update(game='wgan_gp', n_critic=2)
  config.train.batch_size = 32
  config.ema_decay = 0.0
  experiment = gan.GAN(config, devices.make_mesh())
  assert 'sample_ema' not in experiment.evaluation_fns()
  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['train']['gradient_penalty'] > 0
  state = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  assert state.players['generator'].ema_params is None
  config.train.batch_size = 33
  with pytest.raises(ConfigError, match='n_critic'):
    gan.GAN(config, devices.make_mesh())


@pytest.fixture(scope='module')
def dcgan(tmp_path_factory):
  """A tiny-width DCGAN on the tiny shapes set (BatchNorm in both players) and its initial state."""
  config = configs.get_config('dcgan_shapes')
  config.data.update(name='shapes_captions_tiny', data_dir=str(tmp_path_factory.mktemp('tfds')))
  config.generator.update(features=4, z_dim=8)
  config.discriminator.features = 4
  config.evals = {}
  config.train.batch_size = 8
  experiment = gan.GAN(config, devices.make_mesh(1))
  return experiment, jax.jit(experiment.init)(jax.random.PRNGKey(0))


def test_each_update_changes_only_its_players_state(dcgan):
  experiment, state = dcgan
  images = jnp.asarray(np.stack([experiment.data.train[i]['image'] for i in range(8)]))
  generator, discriminator = state.players['generator'], state.players['discriminator']
  assert 'batch_stats' in generator.model_state and 'batch_stats' in discriminator.model_state

  after_d, _ = jax.jit(experiment.discriminator_update)(
      state, (images, jnp.zeros(8, jnp.int32), jnp.int32(0)))
  # The discriminator's step: its parameters and BatchNorm statistics move, the generator's not.
  chex.assert_trees_all_equal(after_d.players['generator'], generator)
  for old, new in ((discriminator.params, after_d.players['discriminator'].params),
                   (discriminator.model_state, after_d.players['discriminator'].model_state)):
    assert all(np.any(a != b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))

  # The round with n_critic = 1 is that update, then the generator's, which leaves D as it was.
  after_round, metrics = jax.jit(experiment.train_step)(state, {'image': images})
  chex.assert_trees_all_close(after_round.players['discriminator'], after_d.players['discriminator'],
                              rtol=1e-5, atol=1e-6)
  new_generator = after_round.players['generator']
  for old, new in ((generator.params, new_generator.params),
                   (generator.model_state, new_generator.model_state),
                   (generator.ema_params, new_generator.ema_params)):
    assert all(np.any(a != b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))
  assert int(after_round.step) == 1 and np.isfinite(metrics['loss'])


def test_dcgan_samples_are_images_in_the_unit_range(dcgan):
  experiment, state = dcgan
  images = experiment.evaluation_fns()['sample'](state, jax.random.PRNGKey(1), 4)
  chex.assert_shape(images, (4, 32, 32, 3))
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


def test_the_conditional_generators_class_changes_the_classifiers_prediction(digits_dir, classifier_dir,
                                                                            tmp_path):
  # A short run of the cgan_digits networks: the fixed classifier (classify:tiny, an MLP of 20
  # steps) must then find the class each sample was drawn for at three times chance (0.1) or more,
  # and the same latents drawn for other classes must be classified differently.
  config = configs.get_config('cgan_digits')
  config.data.data_dir = digits_dir
  config.evals = {}
  config.optim.generator.learning_rate = config.optim.discriminator.learning_rate = 1e-3
  config.ema_decay = 0.99
  config.train.update(steps=1500, log_every=500, eval_every=0, checkpoint_every=1500)
  experiment = gan.GAN(config, devices.make_mesh(1))
  state = loop.train_and_evaluate(experiment, str(tmp_path / 'run'))
  assert state['status'] == 'finished'
  restored = _restore(experiment, str(tmp_path / 'run'))
  classifier = sample_quality.load_classifier(classifier_dir, 'digits_mlp')

  z = jax.random.normal(jax.random.PRNGKey(5), (200, experiment.z_dim))
  generator = restored.players['generator']

  def predictions(labels):
    images, _ = experiment.generate(generator.ema_params, generator.model_state, z, labels)
    return classifier(np.asarray(gan.to_unit_range(images)))[1].argmax(axis=1)

  labels = np.arange(200) % 10
  predicted = predictions(labels)
  assert np.mean(predicted == labels) > 0.3
  assert np.mean(predictions((labels + 3) % 10) != predicted) > 0.5


def _restore(experiment, workdir):
  abstract = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  checkpointer = checkpoint.Checkpointer(workdir)
  _, state, _ = checkpointer.restore_latest(abstract)
  checkpointer.close()
  return state


def test_presets_follow_the_papers_recipes():
  dcgan_64 = configs.get_config('dcgan_64')
  assert (dcgan_64.generator.name, dcgan_64.discriminator.name) == ('dcgan_64_generator',
                                                                    'dcgan_64_discriminator')
  for player in ('generator', 'discriminator'):
    assert (dcgan_64.optim[player].learning_rate, dcgan_64.optim[player].b1) == (2e-4, 0.5)
    wgan = configs.get_config('wgan_gp_digits').optim[player]
    assert (wgan.learning_rate, wgan.b1, wgan.b2) == (1e-4, 0.0, 0.9)
  wgan = configs.get_config('wgan_gp_digits')
  assert (wgan.gan.game, wgan.gan.n_critic, wgan.gan.gp_weight) == ('wgan_gp', 5, 10.0)
  assert configs.get_config('gan_digits_minimax').gan.game == 'minimax'
  assert configs.get_config('cgan_digits').gan.conditional
