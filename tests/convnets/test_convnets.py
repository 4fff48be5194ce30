"""The convnet zoo: shapes on small inputs, the papers' counts, shortcuts, dropout placement,
grouped convolutions, auxiliary heads, residual scaling and He initialisation."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers import zoo
from jaxpapers.convnets import googlenet, inception, layers, nin, resnet

# rbg keys: threefry's random-bit programs take seconds to compile on a 2-core machine.
_RNGS = {'params': jax.random.key(0, impl='rbg'), 'dropout': jax.random.key(1, impl='rbg')}


def _normal(seed, shape):
  # NumPy draws: no random-number program to compile.
  return np.random.default_rng(seed).standard_normal(shape, np.float32)


def _filled_variables(model, x):
  """Variables of `model` with N(0, 0.1^2) parameters (NumPy draws) and fresh batch statistics."""
  rng = np.random.default_rng(0)
  abstract = jax.eval_shape(functools.partial(model.init, train=False), _RNGS, x)
  fill = lambda s: (0.1 * rng.standard_normal(s.shape)).astype(np.float32)
  variables = {'params': jax.tree.map(fill, abstract['params'])}
  if 'batch_stats' in abstract:
    variables['batch_stats'] = jax.tree_util.tree_map_with_path(
        lambda path, s: np.full(s.shape, path[-1].key == 'var', np.float32),
        abstract['batch_stats'])
  return variables


def _abstract_output(model, shape, train=False, **kwargs):
  """(output, variables) of `model` initialised on an input of `shape`, from shapes only; every
  collection is mutable, so sown and captured intermediates are returned too."""
  init = functools.partial(model.init_with_output, train=train, mutable=True, **kwargs)
  return jax.eval_shape(init, _RNGS, jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize('name, size, classes', [
    ('alexnet', 64, 1000), ('vgg11_bn', 32, 1000), ('googlenet', 32, 1000),
    ('resnet50', 32, 1000), ('resnext50_32x4d', 32, 1000), ('wrn_28_10', 32, 10)])
def test_small_inputs_give_logits(name, size, classes):
  out, _ = _abstract_output(zoo.build(name), (2, size, size, 3))
  assert out.shape == (2, classes)


@pytest.mark.parametrize('model', [resnet.CifarResNet(8), resnet.WideResNet(10, 1, 0.3), nin.NiN()],
                         ids=['resnet8', 'wrn_10_1', 'nin'])
def test_tiny_forward_in_train_and_eval_modes(model):
  x = _normal(2, (4, 16, 16, 3))
  variables = _filled_variables(model, x)

  def both(variables, x):
    logits = model.apply(variables, x, train=False)
    return logits, model.apply(variables, x, train=True, mutable=['batch_stats'],
                               rngs={'dropout': jax.random.key(3, impl='rbg')})

  logits, (train_logits, state) = jax.jit(both)(variables, x)
  chex.assert_shape([logits, train_logits], (4, 10))
  chex.assert_tree_all_finite(logits)
  # Dropout, and batch statistics where the model has them, make training outputs differ.
  assert not np.allclose(train_logits, logits)
  assert set(state) == ({'batch_stats'} if 'batch_stats' in variables else set())


@pytest.mark.parametrize('shape, window', [((2, 8, 8, 3), 2), ((2, 9, 7, 3), 2), ((1, 9, 9, 4), 3)])
def test_tiled_max_pool_equals_flax_max_pool_and_its_gradient(shape, window):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)  # no ties: the gradients agree exactly
  def loss(pool, x):
    return jnp.sum(jnp.sin(pool(x)))
  ours = functools.partial(layers.pool, kind='max', window=window, stride=window)
  flax_pool = functools.partial(nn.max_pool, window_shape=(window, window), strides=(window, window))
  chex.assert_trees_all_equal(ours(x), flax_pool(x))
  chex.assert_trees_all_close(jax.grad(loss, argnums=1)(ours, x),
                              jax.grad(loss, argnums=1)(flax_pool, x), atol=1e-6)


def test_nin_pools_round_up_as_caffe():
  # 32 -> 16 -> 8, so the last mlpconv layer's 8x8 class maps are averaged (sec. 3.2).
  _, state = _abstract_output(nin.NiN(), (1, 32, 32, 3), capture_intermediates=True)
  assert state['intermediates']['conv2']['__call__'][0].shape == (1, 16, 16, 192)
  assert state['intermediates']['cccp6']['__call__'][0].shape == (1, 8, 8, 10)


@pytest.mark.parametrize('depth, n, table6', [(20, 3, 0.27), (32, 5, 0.46), (44, 7, 0.66),
                                               (56, 9, 0.85), (110, 18, 1.7)])
def test_cifar_resnet_counts_match_table6(depth, n, table6):
  count = zoo.count_params(f'resnet{depth}')
  # conv1 + BN 464, fc 650; stage s has 2n 3x3 convs with BN, the first reading the narrower input.
  closed_form = (464 + 650 + 2 * n * (9 * 16 * 16 + 32) + 9 * 16 * 32 + (2 * n - 1) * 9 * 32 * 32
                 + 2 * n * 64 + 9 * 32 * 64 + (2 * n - 1) * 9 * 64 * 64 + 2 * n * 128)
  assert count == closed_form
  assert round(count / 1e6, 2 if table6 < 1 else 1) == table6


def test_plain_and_option_b_cifar_counts():
  # Option-A shortcuts have no parameters, so the plain nets count the same as the residual ones.
  assert zoo.count_params('plain20') == zoo.count_params('resnet20') == 269_722
  assert zoo.count_params('plain56') == zoo.count_params('resnet56')
  _, variables = _abstract_output(resnet.CifarResNet(20, shortcut='B'), (1, 32, 32, 3))
  # Projections 16*32 + 32*64 and their BN (2*32 + 2*64): the often quoted 272,474.
  assert zoo.num_params(variables['params']) == 269_722 + 2_560 + 192 == 272_474


def test_option_a_shortcut_subsamples_and_zero_pads():
  x = _normal(0, (2, 8, 8, 16))
  y = resnet.zero_pad_shortcut(x, 32, 2)
  chex.assert_shape(y, (2, 4, 4, 32))
  np.testing.assert_array_equal(y[..., :16], x[:, ::2, ::2, :])
  np.testing.assert_array_equal(y[..., 16:], 0.0)
  abstract = zoo.abstract_variables('resnet20')['params']
  paths = [str(path) for path, _ in jax.tree_util.tree_leaves_with_path(abstract)]
  assert not any('downsample' in path for path in paths)


def test_plain_block_drops_the_shortcut():
  x = _normal(0, (2, 4, 4, 8))
  residual, plain = resnet.BasicBlock(8), resnet.BasicBlock(8, residual=False)
  variables = _filled_variables(residual, x)
  # A zero BN scale and bias silence the residual branch.
  variables['params']['bn2'] = {'scale': np.zeros(8), 'bias': np.zeros(8)}
  both = lambda v, x: (residual.apply(v, x, train=False), plain.apply(v, x, train=False))
  outputs = jax.jit(both)(variables, x)
  np.testing.assert_allclose(outputs[0], nn.relu(x), atol=1e-6)
  np.testing.assert_array_equal(outputs[1], 0.0)


def test_wrn_dropout_sits_between_the_convolutions_after_bn_relu():
  block = resnet.WideBlock(16, dropout_rate=0.5)
  x = _normal(0, (2, 4, 4, 16))
  variables = _filled_variables(block, x)
  names = []

  def traced_calls(variables, x, train):
    """(input, output) of the calls to bn2, dropout and conv2, in call order."""
    calls = []

    def record(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.module.name in ('bn2', 'dropout', 'conv2'):
        names.append(context.module.name)
        calls.append((args[0], out))
      return out

    with nn.intercept_methods(record):
      block.apply(variables, x, train=train, rngs={'dropout': jax.random.key(1, impl='rbg')},
                  mutable=['batch_stats'])
    return calls

  calls = jax.jit(functools.partial(traced_calls, train=True))(variables, x)
  assert names == ['bn2', 'dropout', 'conv2']
  (_, bn2_out), (dropout_in, dropout_out), (conv2_in, _) = calls
  np.testing.assert_allclose(dropout_in, nn.relu(bn2_out))
  np.testing.assert_array_equal(conv2_in, dropout_out)
  kept = np.asarray(dropout_out)[np.asarray(dropout_in) > 0]
  assert 0.35 < np.mean(kept == 0) < 0.65
  # In evaluation the dropout is the identity.
  (_, _), (dropout_in, dropout_out), _ = jax.jit(functools.partial(traced_calls, train=False))(
      variables, x)
  np.testing.assert_array_equal(dropout_in, dropout_out)


@pytest.mark.parametrize('name, first, last', [
    ('resnet50', (3, 3, 64, 64), (3, 3, 512, 512)),
    ('wide_resnet50_2', (3, 3, 128, 128), (3, 3, 1024, 1024)),
    # Cardinality 32: each group of 128 / 32 = 4 input channels feeds 4 outputs.
    ('resnext50_32x4d', (3, 3, 4, 128), (3, 3, 32, 1024)),
    ('wide_resnet101_2', (3, 3, 128, 128), (3, 3, 1024, 1024)),
    # 32 groups of 8 channels in the first stage: int(64 * 8 / 64) * 32 = 256 wide.
    ('resnext101_32x8d', (3, 3, 8, 256), (3, 3, 64, 2048))])
def test_bottleneck_3x3_widths_and_groups(name, first, last):
  params = zoo.abstract_variables(name)['params']
  assert params['layer1_0']['conv2']['kernel'].shape == first
  assert params['layer4_0']['conv2']['kernel'].shape == last


def _normal_stats(w):
  w = np.asarray(w).ravel()
  return w.std(), np.mean(np.abs(w) > 2 * w.std())


@pytest.mark.parametrize('block, shape, conv, fan', [
    # fan-out n = k*k*c_out, as torchvision's kaiming_normal_(mode='fan_out'); fan-in would be 144.
    (resnet.BasicBlock(32, strides=2), (1, 8, 8, 16), 'conv1', 9 * 32),
    # Grouped: torch's fan-out is still k*k*c_out (fan-in would be 9 * 4).
    (resnet.Bottleneck(64, groups=32, width_per_group=4), (1, 4, 4, 256), 'conv2', 9 * 128),
    # The WRN authors' code draws fan-in n = k*k*c_in.
    (resnet.WideBlock(32, strides=2), (1, 8, 8, 16), 'conv1', 9 * 16)])
def test_he_initialisation(block, shape, conv, fan):
  params = jax.jit(functools.partial(block.init, train=False))(_RNGS, jnp.zeros(shape))['params']
  kernel = np.asarray(params[conv]['kernel']).ravel()
  std = kernel.std()
  assert std == pytest.approx(np.sqrt(2.0 / fan), rel=0.06)
  assert abs(kernel.mean()) < 0.1 * std
  # An untruncated normal: 4.55% of draws lie beyond two standard deviations.
  assert 0.03 < np.mean(np.abs(kernel) > 2 * std) < 0.06
  assert set(params['bn1']) == {'scale', 'bias'}
  np.testing.assert_array_equal(params['bn1']['scale'], 1.0)
  np.testing.assert_array_equal(params['bn1']['bias'], 0.0)


def test_googlenet_auxiliary_heads():
  model = googlenet.GoogLeNet()
  logits, state = _abstract_output(model, (2, 32, 32, 3), train=True)
  assert logits.shape == (2, 1000)
  # Each head: 1x1 conv to 128 + BN, fc1 2048 -> 1024, fc2 1024 -> 1000; on 4a (512) and 4d (528).
  head = lambda c: c * 128 + 256 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
  params = state['params']
  assert zoo.num_params(params['aux1']) == head(512) == 3_188_968
  assert zoo.num_params(params['aux2']) == head(528) == 3_191_016
  assert zoo.num_params(params) - head(512) - head(528) == 6_624_904
  assert {k: v[0].shape for k, v in state['intermediates'].items()} == {
      'aux1_logits': (2, 1000), 'aux2_logits': (2, 1000)}
  _, state = _abstract_output(model, (2, 32, 32, 3), train=False)
  assert 'intermediates' not in state  # No auxiliary logits in evaluation.


def test_googlenet_training_loss_weights_aux_heads_by_0_3():
  main, aux1, aux2 = (_normal(seed, (4, 5)) for seed in range(3))
  labels = jnp.array([0, 1, 2, 3])
  xent = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()
  losses = jax.jit(lambda main, aux1, aux2: (
      googlenet.training_loss(main, {'aux1_logits': (aux1,), 'aux2_logits': (aux2,)}, labels),
      xent(main) + 0.3 * (xent(aux1) + xent(aux2)),
      googlenet.training_loss(main, {}, labels), xent(main)))(main, aux1, aux2)
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
  np.testing.assert_allclose(losses[2], losses[3], rtol=1e-6)
  assert losses[0] > losses[2]


@pytest.mark.parametrize('model, grids', [
    # Figure 9: stem 35x35x384, Reduction-A 17x17x1024, Reduction-B 8x8x1536.
    (inception.InceptionV4(), {'features_5': (35, 35, 384), 'features_10': (17, 17, 1024),
                               'features_18': (8, 8, 1536)}),
    # The released Inception-ResNet-v2's 320 / 1088 / 2080 residual widths (one block per grid
    # size is enough for the shapes).
    (inception.InceptionResNetV2(num_blocks=(1, 1, 1)),
     {'mixed_5b': (35, 35, 320), 'mixed_6a': (17, 17, 1088), 'mixed_7a': (8, 8, 2080),
      'conv2d_7b': (8, 8, 1536)})], ids=['inception_v4', 'inception_resnet_v2'])
def test_inception_grid_sizes_on_299(model, grids):
  logits, state = _abstract_output(model, (1, 299, 299, 3),
                                   capture_intermediates=lambda m, _: m.name in grids)
  shapes = {k: v['__call__'][0].shape[1:] for k, v in state['intermediates'].items()}
  assert shapes == grids and logits.shape == (1, 1000)


def test_inception_resnet_v2_smallest_input_is_75():
  # Its unpadded stem and reductions leave a 1x1 map from 75x75 (one row and column fewer: 0x0).
  model = inception.InceptionResNetV2(num_blocks=(1, 1, 1))
  for size, grid in ((75, (1, 1, 1536)), (74, (0, 0, 1536))):
    _, state = _abstract_output(model, (1, size, size, 3),
                                capture_intermediates=lambda m, _: m.name == 'conv2d_7b')
    assert state['intermediates']['conv2d_7b']['__call__'][0].shape[1:] == grid


def test_inception_resnet_block_scales_its_residual():
  block = inception.ResidualInception(inception._BLOCK35, scale=0.17)
  x = _normal(0, (1, 3, 3, 320))
  variables = _filled_variables(block, x)
  # With the closing 1x1 convolution reduced to its bias b, the block computes relu(x + 0.17 b).
  variables['params']['conv2d']['kernel'] = np.zeros_like(variables['params']['conv2d']['kernel'])
  b = np.linspace(-1.0, 1.0, 320, dtype=np.float32)
  variables['params']['conv2d']['bias'] = b
  final = inception.ResidualInception(inception._BLOCK35, scale=1.0, activate=False)
  outputs = jax.jit(lambda v, x: (block.apply(v, x, train=False), final.apply(v, x, train=False)))(
      variables, x)
  np.testing.assert_allclose(outputs[0], nn.relu(x + 0.17 * b), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(outputs[1], x + b, rtol=1e-6, atol=1e-6)
