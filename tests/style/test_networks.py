"""SRResNet, the SRGAN discriminator, sub-pixel shuffle and Johnson's transformation network."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.convnets import torchvision_convert, vgg
from jaxpapers.style import srgan


def _torch_pixel_shuffle(x_nchw: np.ndarray, r: int) -> np.ndarray:
  """PyTorch's definition: out[b, c, h r + i, w r + j] = in[b, c r^2 + i r + j, h, w]."""
  b, channels, h, w = x_nchw.shape
  c = channels // (r * r)
  out = np.zeros((b, c, h * r, w * r), x_nchw.dtype)
  for ci in range(c):
    for i in range(r):
      for j in range(r):
        out[:, ci, i::r, j::r] = x_nchw[:, ci * r * r + i * r + j]
  return out


@pytest.mark.parametrize('r', [2, 3])
def test_pixel_shuffle_matches_torch_semantics(r):
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 2 * r * r)).astype(np.float32)
  expected = _torch_pixel_shuffle(x.transpose(0, 3, 1, 2), r).transpose(0, 2, 3, 1)
  np.testing.assert_array_equal(np.asarray(srgan.pixel_shuffle(jnp.asarray(x), r)), expected)
  with pytest.raises(ValueError, match='shuffle'):
    srgan.pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)


def test_srresnet_upsamples_by_four():
  model = zoo.build('srresnet_x4_tiny')
  x = jax.random.uniform(jax.random.key(0), (2, 8, 32, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(1), x)
  apply = jax.jit(functools.partial(model.apply, train=False))
  chex.assert_shape(apply(variables, x), (2, 32, 128, 3))
  # Output block (4 i .. 4 i + 3, 4 j .. 4 j + 3) is LR pixel (i, j)'s: changing that pixel moves
  # it, and moves nothing beyond the receptive field (13 LR pixels for the tiny preset's layers).
  y = apply(variables, x.at[:, 0, 0].add(1.0))
  changed = np.abs(np.asarray(y - apply(variables, x))).max(axis=(0, 3)) > 0
  assert changed[:4, :4].all() and not changed[:, 4 * 14:].any()


def test_prelu_slopes():
  x = jnp.array([[-2.0, 3.0]])
  variables = srgan.PReLU().init(jax.random.key(0), x)
  chex.assert_trees_all_close(srgan.PReLU().apply(variables, x), jnp.array([[-0.5, 3.0]]))
  channelwise = srgan.SRResNet(channel_shared=False)
  count = zoo.num_params(jax.eval_shape(channelwise.init, jax.random.key(0),
                                        jnp.zeros((1, 24, 24, 3)))['params'])
  assert count == 1_550_659  # 64 slopes in each of the 19 PReLUs (see srgan.py)


def test_discriminator_gives_one_logit_per_image():
  model = zoo.build('srgan_discriminator_tiny')
  x = jnp.zeros((3, 32, 32, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  logits, updated = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))(
      variables, x)
  chex.assert_shape(logits, (3,))
  assert set(updated) == {'batch_stats'}
  # Fig. 4's four stride-2 layers: 32 -> 2, so the dense layer sees 2 x 2 x 8f features.
  assert variables['params']['dense']['kernel'].shape == (2 * 2 * 64, 16)


def test_transform_net_keeps_size_and_range():
  model = zoo.build('johnson_transform_tiny')
  x = jax.random.uniform(jax.random.key(0), (2, 16, 24, 3))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  y = jax.jit(model.apply)(variables, x)
  chex.assert_shape(y, x.shape)
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  # Instance norm: each image is normalised alone, so a batch-mate does not change an output.
  alone = jax.jit(model.apply)(variables, x[:1])
  chex.assert_trees_all_close(alone, y[:1], atol=1e-5)


def test_torchvision_converter_covers_vgg19_feature_layers():
  shapes = torchvision_convert.torchvision_shapes(vgg.VGG('E'))
  assert shapes['features.34.weight'] == (512, 512, 3, 3)  # conv5_4, the last of 16
  assert shapes['classifier.0.weight'] == (4096, 25088)
  assert len([k for k in shapes if k.startswith('features.')]) == 32
