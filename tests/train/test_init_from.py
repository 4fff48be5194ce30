"""`init_from`: a fresh run starts from saved variables; excluded and new arrays start fresh; shape
mismatches stop in one line; a resumed run ignores it. (Converted torchvision weights: tests/parity.)"""

import logging

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import classify
from experiments.configs import classify as classify_configs
from jaxpapers import zoo
from jaxpapers.convnets import torchvision_convert
from jaxpapers.errors import ConfigError, UserError
from jaxpapers.train import checkpoint, devices, init_from, loop
from jaxpapers.train.state import TrainState

HEAD = '^params/Dense_1/'  # digits_cnn's classifier


def digits_cnn_config(digits_dir, **overrides):
  config = classify_configs.get_config('tiny')
  config.model.name = 'digits_cnn'
  config.data.data_dir = digits_dir
  config.optim.update(schedule='constant', warmup_steps=0)
  config.train.update(steps=2, batch_size=16, log_every=1, eval_every=0, checkpoint_every=2)
  config.update(overrides)
  return config


def random_variables(name, seed=0, **shape_changes):
  """Random float32 arrays with the shapes of preset `name`'s variables ('path': shape overrides)."""
  rng = np.random.default_rng(seed)
  flat = {path: shape_changes.get(path, leaf.shape)
          for path, leaf in init_from.flatten(zoo.abstract_variables(name)).items()}
  tree = {}
  for path, shape in flat.items():
    *parents, leaf = path.split('/')
    node = tree
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = rng.standard_normal(shape).astype(np.float32)
  return tree


def fresh_state(config):
  experiment = classify.Classify(config, devices.make_mesh())
  replicated = devices.replicated(experiment.mesh)
  return jax.jit(experiment.init, out_shardings=replicated)(jax.random.PRNGKey(config.seed))


def test_loaded_arrays_equal_the_saved_ones_and_the_excluded_head_starts_fresh(
    digits_dir, tmp_path, caplog):
  saved = random_variables('digits_cnn')
  init_from.save_variables(tmp_path / 'converted', saved, preset='digits_cnn', source='test')
  state = fresh_state(digits_cnn_config(digits_dir))
  with caplog.at_level(logging.INFO):
    loaded = init_from.load_into(state, str(tmp_path / 'converted'), exclude=HEAD)
  for path, value in init_from.flatten(loaded.params).items():
    expected = (init_from.flatten(state.params)[path] if path.startswith('Dense_1/')
                else init_from.flatten(saved['params'])[path])
    np.testing.assert_array_equal(np.asarray(value), expected, err_msg=path)
    assert value.sharding == init_from.flatten(state.params)[path].sharding
  messages = [r.getMessage() for r in caplog.records]
  assert any('loaded 6 arrays' in m and '2 initialised fresh' in m and '(digits_cnn from test)' in m
             for m in messages), messages
  assert 'init_from initialised fresh: params/Dense_1/bias, params/Dense_1/kernel' in messages


def test_model_state_and_ema_params_are_loaded_too(tmp_path):
  mesh = devices.make_mesh()
  params = {'dense': {'kernel': jnp.zeros((3, 2))}, 'new': jnp.zeros((4,))}
  state = jax.device_put(TrainState.create(
      params=params, tx=optax.sgd(0.1), rng=jax.random.PRNGKey(0), ema_decay=0.9,
      model_state={'batch_stats': {'bn': {'mean': jnp.zeros((2,))}}}), devices.replicated(mesh))
  kernel, mean = np.arange(6.0).reshape(3, 2), np.array([5.0, 6.0])
  init_from.save_variables(tmp_path / 'v', {'params': {'dense': {'kernel': kernel}},
                                            'batch_stats': {'bn': {'mean': mean}},
                                            'other': {'unused': np.ones(1)}})
  loaded = init_from.load_into(state, str(tmp_path / 'v'))
  np.testing.assert_array_equal(loaded.params['dense']['kernel'], kernel)
  np.testing.assert_array_equal(loaded.ema_params['dense']['kernel'], kernel)
  np.testing.assert_array_equal(loaded.model_state['batch_stats']['bn']['mean'], mean)
  np.testing.assert_array_equal(loaded.params['new'], np.zeros(4))
  chex.assert_trees_all_equal_structs(loaded, state)

  init_from.save_variables(tmp_path / 'bad', {'batch_stats': {'bn': {'mean': np.zeros(3)}}})
  with pytest.raises(ConfigError) as error:
    init_from.load_into(state, str(tmp_path / 'bad'))
  assert "batch_stats/bn/mean has shape (3,) there but (2,) in the model" in str(error.value)
  init_from.save_variables(tmp_path / 'other', {'params': {'conv': {'kernel': np.zeros(3)}}})
  with pytest.raises(ConfigError, match='none of its 1 arrays is at a path of the model'):
    init_from.load_into(state, str(tmp_path / 'other'))
  with pytest.raises(ConfigError, match='no variables/ in it'):
    init_from.load_into(state, str(tmp_path / 'missing'))


def test_the_loop_starts_a_fresh_run_from_init_from_and_a_resumed_one_ignores_it(
    digits_dir, tmp_path):
  saved = random_variables('digits_cnn')
  init_from.save_variables(tmp_path / 'converted', saved)
  wrong_head = random_variables('digits_cnn', **{'params/Dense_1/kernel': (128, 7)})
  init_from.save_variables(tmp_path / 'wrong_head', wrong_head)
  # Learning rate 0: the checkpoint after two steps holds the start state (no batch statistics).
  config = digits_cnn_config(digits_dir, init_from=str(tmp_path / 'converted'),
                             init_from_exclude=HEAD)
  config.optim.learning_rate = 0.0
  loop.train_and_evaluate(classify.Classify(config, devices.make_mesh()), str(tmp_path / 'run'))
  trained = checkpoint.load_params(tmp_path / 'run')
  body = {k: v for k, v in trained.items() if k != 'Dense_1'}
  chex.assert_trees_all_equal(body, {k: saved['params'][k] for k in body})
  assert not np.any(trained['Dense_1']['kernel'] == saved['params']['Dense_1']['kernel'])

  # Relaunched (resumed, here finished): the wrong-head checkpoint would fail a fresh run, and
  # is not even read.
  config.init_from, config.init_from_exclude = str(tmp_path / 'wrong_head'), ''
  loop.train_and_evaluate(classify.Classify(config, devices.make_mesh()), str(tmp_path / 'run'))
  chex.assert_trees_all_equal(checkpoint.load_params(tmp_path / 'run'), trained)
  with pytest.raises(ConfigError) as error:
    loop.train_and_evaluate(classify.Classify(config, devices.make_mesh()), str(tmp_path / 'new'))
  message = str(error.value)
  assert '\n' not in message
  assert ("params/Dense_1/kernel has shape (128, 7) there but (128, 10) in the model; to "
          "initialise it fresh instead, pass --config.init_from_exclude='^params/Dense_1/'"
          in message), message


def test_convert_checks_the_state_dict_against_the_preset(convert_script):
  convert = convert_script
  variables = jax.tree.map(np.asarray, random_variables('resnet18', seed=1))
  variables = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  state_dict = torchvision_convert.to_torchvision(zoo.build('resnet18'), variables)
  chex.assert_trees_all_equal(convert.convert('torchvision', 'resnet18', state_dict), variables)
  state_dict['fc.weight'] = np.zeros((10, 512), np.float32)
  with pytest.raises(UserError, match=r'^torchvision weights do not convert to resnet18: '
                                      r'fc.weight: shape \(10, 512\), expected \(1000, 512\)$'):
    convert.convert('torchvision', 'resnet18', state_dict)
  with pytest.raises(UserError, match='converted variables do not match preset resnet18: '
                                      r'params/fc/bias has shape \(10,\), the preset \(1000,\)'):
    convert.check_shapes({**variables, 'params': {**variables['params'], 'fc': {
        'kernel': np.zeros((512, 10)), 'bias': np.zeros(10)}}}, zoo.abstract_variables('resnet18'),
        'resnet18')
