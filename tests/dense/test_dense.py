"""Segmenters: the papers' sizes and counts, pooling indices, bilinear upsampling, top-down paths."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.convnets.resnet import ResNetFeatures
from jaxpapers.dense import fc_densenet, fpn, layers


def _conv(c_in, c_out, k=3):
  return k * k * c_in * c_out + c_out


def test_unet_original_tile_sizes_and_count_from_figure1():
  preset = zoo.get('unet_original')
  out = jax.eval_shape(lambda x: preset.build().init_with_output(jax.random.key(0), x)[0],
                       *preset.inputs())
  chex.assert_shape(out['out'], (1, 388, 388, 2))  # 572 -> 388, Figure 1
  widths = [64, 128, 256, 512, 1024]
  down = sum(_conv(c_in, c, 3) + _conv(c, c, 3) for c_in, c in zip([1, *widths[:-1]], widths))
  up = sum(4 * c * 2 * c + c + _conv(2 * c, c) + _conv(c, c) for c in widths[:-1])  # up-conv 2x2
  assert zoo.count_params('unet_original') == down + up + _conv(64, 2, 1) == 31_030_658


def test_dilated_resnet_keeps_output_stride_8():
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  model = ResNetFeatures((3, 4, 6, 3), 'bottleneck', dilate=(False, True, True))
  stages = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)
  assert [s.shape[1] for s in stages] == [56, 28, 28, 28]
  plain = ResNetFeatures((3, 4, 6, 3), 'bottleneck')
  stages = jax.eval_shape(lambda x: plain.init_with_output(jax.random.key(0), x)[0], x)
  assert [s.shape[1] for s in stages] == [56, 28, 14, 7]


def test_fcn_counts_equal_torchvision_documentation():
  # torchvision's documented counts (models/segmentation): resnet trunk minus fc + FCNHead(2048)
  # + aux FCNHead(1024), 21 classes.
  head = 9 * 2048 * 512 + 2 * 512 + _conv(512, 21, 1)
  aux = 9 * 1024 * 256 + 2 * 256 + _conv(256, 21, 1)
  assert zoo.count_params('fcn_resnet50') == 25_557_032 - 2_049_000 + head + aux == 35_322_218
  assert zoo.count_params('fcn_resnet101') == 54_314_346


def test_fcn_bilinear_upsampling_is_interpolation_and_fixed():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 6, 6, 2)), jnp.float32)
  up = layers.upsample(2, 4, 2, 'up', use_bias=False, kernel_init=layers.bilinear_init)
  y, _ = up.init_with_output(jax.random.key(0), x)
  # In the interior (away from the zero padding) it is bilinear resizing with half-pixel centres.
  np.testing.assert_allclose(y[:, 1:-1, 1:-1], layers.resize(x, 12, 12)[:, 1:-1, 1:-1], atol=1e-5)
  model = zoo.build('fcn8s_scenes', config=(4, 'M', 4, 'M', 4, 'M', 4, 'M', 4, 'M'), fc_features=8)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  np.testing.assert_array_equal(variables['params']['upscore_final'],
                                layers.bilinear_kernel(16, 6, 6))

  def loss(params):
    return jnp.sum(model.apply({'params': params}, jnp.ones((1, 32, 32, 3)))['out'] ** 2)

  params = jax.tree.map(lambda p: p + 0.01, variables['params'])  # leave the zero-initialised scores
  grads = jax.jit(jax.grad(loss))(params)
  assert not np.any(grads['upscore_final'])  # fixed, sec. 3.3
  assert np.any(grads['upscore0']['kernel'])  # learned


def test_segnet_unpooling_puts_maxima_back_where_they_were():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
  pooled, indices = layers.max_pool_with_indices(jnp.asarray(x))
  unpooled = np.asarray(layers.max_unpool(pooled, indices))
  expected = np.zeros_like(x)
  for n, i, j, c in np.ndindex(2, 3, 4, 3):
    window = x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
    a, b = np.unravel_index(np.argmax(window), (2, 2))
    expected[n, 2 * i + a, 2 * j + b, c] = window[a, b]
  np.testing.assert_array_equal(unpooled, expected)
  np.testing.assert_array_equal(pooled, x.reshape(2, 3, 2, 4, 2, 3).max((2, 4)))


def _with_statistics(name):
  variables = zoo.abstract_variables(name)
  stats = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables['batch_stats']))
  return zoo.count_params(name) + stats


@pytest.mark.parametrize('name, paper', [('fc_densenet67', 3.5), ('fc_densenet103', 9.4),
                                         ('segnet', 29.5)])
def test_counts_with_bn_statistics_round_to_the_papers(name, paper):
  assert round(_with_statistics(name) / 1e6, 1) == paper
  assert round(zoo.count_params(name) / 1e6, 1) != paper or name == 'fc_densenet67'


def test_fc_densenet_transitions_up_see_only_the_new_maps():
  variables = zoo.abstract_variables('fc_densenet103')['params']
  # Bottleneck: 15 layers x 16; then up blocks of 12, 10, 7, 5 layers (the last feeds no TU).
  inputs = [variables[f'transition_up{b}']['kernel'].shape[2] for b in range(5)]
  assert inputs == [240, 192, 160, 112, 80]
  # A dense layer's input grows by the growth rate: block down0's 4th layer sees 48 + 3 * 16.
  assert variables['down0']['layer3']['conv']['kernel'].shape == (3, 3, 96, 16)
  assert isinstance(zoo.build('fc_densenet103'), fc_densenet.FCDenseNet)


def test_fpn_top_down_pathway():
  rng = np.random.default_rng(2)
  c = [jnp.asarray(rng.normal(size=(1, 16 // 2**i, 16 // 2**i, 4 * 2**i)), jnp.float32)
       for i in range(4)]
  model = fpn.FPN(features=8, extra_max_pool=True)
  variables = jax.jit(model.init)(jax.random.key(0), c)
  apply = jax.jit(model.apply)
  base = apply(variables, c)
  assert [p.shape for p in base] == [(1, 16, 16, 8), (1, 8, 8, 8), (1, 4, 4, 8), (1, 2, 2, 8),
                                     (1, 1, 1, 8)]
  changed_c5 = apply(variables, [*c[:3], c[3] + 1.0])
  changed_c2 = apply(variables, [c[0] + 1.0, *c[1:]])
  # Top-down: the coarsest map reaches every level; a fine one reaches no coarser level.
  assert all(not np.allclose(a, b) for a, b in zip(base, changed_c5))
  assert not np.allclose(base[0], changed_c2[0])
  for a, b in zip(base[1:], changed_c2[1:]):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(base[4], base[3][:, ::2, ::2])


# Each scenes preset, shrunk (fewer and narrower layers, same code paths) to keep the test fast.
_SMALL = {
    'unet_scenes': dict(features=4, depth=2),
    'fcn8s_scenes': dict(config=(4, 'M', 4, 'M', 4, 'M', 4, 'M', 4, 'M'), fc_features=8),
    'segnet_scenes': dict(encoder=((4,), (4,)), decoder=((4,), (4,))),
    'fc_densenet_scenes': dict(down_layers=(1, 2), bottleneck_layers=1, growth=4, first_features=4),
    'fpn_resnet18_scenes': dict(stage_sizes=(1, 1, 1, 1), features=8, head_features=8),
}


@pytest.mark.parametrize('name', sorted(_SMALL))
def test_scenes_presets_train_forward(name):
  model = zoo.build(name, **_SMALL[name])
  x = jnp.asarray(np.random.default_rng(3).random((1, 32, 32, 3)), jnp.float32)
  variables = model.init({'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x)
  out, state = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)},
                           mutable=['batch_stats'])
  chex.assert_shape(out['out'], (1, 32, 32, 6))
  chex.assert_tree_all_finite(out)
  if 'batch_stats' in variables:  # training mode updates the running statistics
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(variables['batch_stats']),
                                                      jax.tree.leaves(state['batch_stats'])))


def test_fcn_carries_torchvisions_state_dict_names():
  from jaxpapers.convnets import torchvision_convert
  shapes = torchvision_convert.torchvision_shapes(zoo.build('fcn_resnet50'))
  assert shapes['classifier.0.weight'] == (512, 2048, 3, 3)
  assert shapes['classifier.4.weight'] == (21, 512, 1, 1)
  assert shapes['aux_classifier.0.weight'] == (256, 1024, 3, 3)
  assert shapes['backbone.layer4.2.conv3.weight'] == (2048, 512, 1, 1)
  assert 'backbone.fc.weight' not in shapes and 'backbone.bn1.running_var' in shapes
