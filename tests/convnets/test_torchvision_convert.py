"""torchvision <-> Flax weight conversion, without torchvision: key names and shapes against
torchvision's naming (written out here), transposes, the flatten reordering, round trips, and
strictness. Parity with torchvision itself is in tests/parity."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.convnets import alexnet, googlenet, resnet, vgg
from jaxpapers.convnets import torchvision_convert as tc


def _bn(name, channels):
  return {f'{name}.{leaf}': (channels,) for leaf in ('weight', 'bias', 'running_mean',
                                                      'running_var')} | {
                                                          f'{name}.num_batches_tracked': ()}


def _resnet18_state_dict_shapes():
  """torchvision resnet18's state dict, from its structure: BasicBlocks, projections on the first
  block of layers 2-4."""
  shapes = {'conv1.weight': (64, 3, 7, 7), **_bn('bn1', 64),
            'fc.weight': (1000, 512), 'fc.bias': (1000,)}
  inplanes = 64
  for layer, planes in enumerate((64, 128, 256, 512), start=1):
    for block in range(2):
      prefix = f'layer{layer}.{block}'
      cin = inplanes if block == 0 else planes
      shapes[f'{prefix}.conv1.weight'] = (planes, cin, 3, 3)
      shapes[f'{prefix}.conv2.weight'] = (planes, planes, 3, 3)
      shapes |= _bn(f'{prefix}.bn1', planes) | _bn(f'{prefix}.bn2', planes)
      if layer > 1 and block == 0:
        shapes[f'{prefix}.downsample.0.weight'] = (planes, inplanes, 1, 1)
        shapes |= _bn(f'{prefix}.downsample.1', planes)
    inplanes = planes
  return shapes


def test_resnet18_keys_and_shapes_are_torchvisions():
  shapes = tc.torchvision_shapes(zoo.build('resnet18'))
  assert shapes == _resnet18_state_dict_shapes()
  assert len(shapes) == 122  # len(torchvision.models.resnet18().state_dict())


def test_alexnet_and_vgg16_bn_keys():
  alex = tc.torchvision_shapes(alexnet.AlexNet())
  assert sorted(alex) == sorted(f'{m}.{leaf}' for m in (
      'features.0', 'features.3', 'features.6', 'features.8', 'features.10', 'classifier.1',
      'classifier.4', 'classifier.6') for leaf in ('weight', 'bias'))
  assert alex['classifier.1.weight'] == (4096, 256 * 6 * 6)
  shapes = tc.torchvision_shapes(vgg.VGG('D', batch_norm=True))
  # torchvision's vgg16_bn: conv at these indices of `features`, its BN at the next one.
  convs = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)
  expected = {f'features.{i}.weight' for i in convs} | {f'features.{i + 1}.running_var'
                                                         for i in convs}
  assert expected <= set(shapes)
  assert len(shapes) == 13 * 2 + 13 * 5 + 3 * 2
  assert shapes['features.40.weight'] == (512, 512, 3, 3)
  assert shapes['classifier.0.weight'] == (4096, 512 * 7 * 7)


def _random_variables(model, seed=0):
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(functools.partial(model.init, train=False),
                            {'params': jax.random.key(0, impl='rbg')},
                            jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  return jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), abstract)


@pytest.mark.parametrize('model', [
    zoo.build('resnet18'),
    # One bottleneck per stage keeps the arrays small; the names and groups are ResNeXt-50's.
    resnet.ResNet((1, 1, 1, 1), 'bottleneck', groups=32, width_per_group=4),
    zoo.build('googlenet')], ids=['resnet18', 'resnext_bottlenecks', 'googlenet'])
def test_round_trip_covers_every_leaf_once(model):
  variables = _random_variables(model)
  state_dict = tc.to_torchvision(model, variables)
  n_leaves = len(jax.tree.leaves(variables))
  n_batch_norms = sum(k.endswith('num_batches_tracked') for k in state_dict)
  assert len(state_dict) == n_leaves + n_batch_norms  # Distinct keys: no two leaves collide.
  assert {k: v.shape for k, v in state_dict.items()} == tc.torchvision_shapes(model)
  back = tc.from_torchvision(model, state_dict)
  assert set(back) == {'params', 'batch_stats'}
  jax.tree.map(np.testing.assert_array_equal, back, variables)


def test_transposes():
  model = resnet.ResNet((1, 1, 1, 1), 'bottleneck', groups=32, width_per_group=4)
  variables = _random_variables(model)
  state_dict = tc.to_torchvision(model, variables)
  params = variables['params']
  # Conv weight [out, in / groups, kh, kw] is the kernel [kh, kw, in / groups, out].
  np.testing.assert_array_equal(state_dict['conv1.weight'][5, 2, 1, 6],
                                params['conv1']['kernel'][1, 6, 2, 5])
  assert state_dict['layer1.0.conv2.weight'].shape == (128, 4, 3, 3)
  np.testing.assert_array_equal(state_dict['layer1.0.conv2.weight'][100, 3, 0, 2],
                                params['layer1_0']['conv2']['kernel'][0, 2, 3, 100])
  # Dense weight [out, in] is the kernel [in, out]; BN weight is the scale, stats go to buffers.
  np.testing.assert_array_equal(state_dict['fc.weight'][7, 11], params['fc']['kernel'][11, 7])
  np.testing.assert_array_equal(state_dict['bn1.weight'], params['bn1']['scale'])
  np.testing.assert_array_equal(state_dict['layer1.0.downsample.1.running_var'],
                                variables['batch_stats']['layer1_0']['downsample_1']['var'])


@pytest.mark.parametrize('torch_key, flax_path, chw', [
    ('classifier.1.weight', ('classifier_1',), (256, 6, 6)),
    ('aux1.fc1.weight', ('aux1', 'fc1'), (128, 4, 4))])
def test_dense_after_flatten_reorders_channels(torch_key, flax_path, chw):
  """torch flattens an NCHW map as (C, H, W), Flax an NHWC one as (H, W, C): the converted layer
  must give the same output on the same feature map."""
  model = alexnet.AlexNet() if torch_key.startswith('classifier') else googlenet.GoogLeNet()
  shapes = tc.torchvision_shapes(model)
  # Zeros everywhere except the layer under test keeps this cheap.
  state_dict = {k: np.zeros(s, np.int64 if k.endswith('tracked') else np.float32)
                for k, s in shapes.items()}
  rng = np.random.default_rng(0)
  weight = rng.standard_normal(shapes[torch_key], np.float32)
  state_dict[torch_key] = weight
  kernel = tc.from_torchvision(model, state_dict)['params']
  for name in flax_path:
    kernel = kernel[name]
  feature_map = rng.standard_normal(chw, np.float32)
  torch_out = weight @ feature_map.reshape(-1)
  flax_out = feature_map.transpose(1, 2, 0).reshape(-1) @ np.asarray(kernel['kernel'])
  np.testing.assert_allclose(flax_out, torch_out, rtol=1e-4, atol=1e-4)


def test_conversion_is_strict():
  model = zoo.build('resnet18')
  state_dict = tc.to_torchvision(model, _random_variables(model))
  del state_dict['layer3.1.bn2.running_mean']
  with pytest.raises(KeyError, match=r"missing \['layer3.1.bn2.running_mean'\]"):
    tc.from_torchvision(model, state_dict)
  state_dict['layer3.1.bn2.running_mean'] = np.zeros(256, np.float32)
  state_dict['fc2.weight'] = np.zeros((3, 3), np.float32)
  with pytest.raises(KeyError, match=r"unexpected \['fc2.weight'\]"):
    tc.from_torchvision(model, state_dict)
  del state_dict['fc2.weight']
  state_dict['fc.weight'] = np.zeros((10, 512), np.float32)
  with pytest.raises(ValueError, match=r'fc.weight: shape \(10, 512\), expected \(1000, 512\)'):
    tc.from_torchvision(model, state_dict)
  with pytest.raises(TypeError, match='no torchvision counterpart for CifarResNet'):
    tc.torchvision_shapes(resnet.CifarResNet(20))


def test_torch_module_names():
  assert tc.torch_module_name(('layer1_0', 'downsample_1')) == 'layer1.0.downsample.1'
  assert tc.torch_module_name(('inception4a', 'branch2_1', 'conv')) == 'inception4a.branch2.1.conv'
  assert tc.torch_module_name(('features_10',)) == 'features.10'
  assert tc.torch_module_name(('aux1', 'fc1')) == 'aux1.fc1'
