"""Batch normalisation in the convnet zoo (Ioffe & Szegedy 2015, arXiv:1502.03167): statistics of
the global batch under a sharded jit, torchvision's momentum and eps, train vs eval behaviour."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.convnets import layers, resnet
from jaxpapers.train import devices

_EPS = 1e-5


class _BatchNorm(nn.Module):

  @nn.compact
  def __call__(self, x, train):
    return layers.batch_norm(train, 'bn')(x)


def _variables(channels, mean=0.0, var=1.0):
  return {'params': {'bn': {'scale': jnp.ones(channels), 'bias': jnp.zeros(channels)}},
          'batch_stats': {'bn': {'mean': jnp.full(channels, mean), 'var': jnp.full(channels, var)}}}


def _shard_dependent_batch():
  """16 examples, two per device, each device's pair offset differently."""
  x = np.random.default_rng(0).normal(size=(16, 3, 3, 4)).astype(np.float32)
  return x + np.repeat(np.arange(8, dtype=np.float32), 2)[:, None, None, None]


def _train_step(model):
  return jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))


def test_sharded_batch_norm_uses_global_batch_statistics():
  mesh = devices.make_mesh()
  assert mesh.size == 8
  x = _shard_dependent_batch()
  step = _train_step(_BatchNorm())
  variables = jax.device_put(_variables(4), devices.replicated(mesh))
  sharded_x = jax.device_put(x, devices.data_sharded(mesh))
  y, state = step(variables, sharded_x)
  assert len(sharded_x.sharding.device_set) == 8 and len(y.sharding.device_set) == 8
  # Algorithm 1 over the whole batch of 16, and torchvision's running-average update.
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + _EPS), atol=1e-5)
  np.testing.assert_allclose(state['batch_stats']['bn']['mean'], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(state['batch_stats']['bn']['var'], 0.9 + 0.1 * var, rtol=1e-5)
  # Per-device statistics would be far from these: the offsets differ by up to 7 across devices.
  assert np.abs(x[:2].mean(axis=(0, 1, 2)) - mean).min() > 3


def test_sharded_block_matches_one_device():
  # A residual block (two batch norms and a projection's) on 8 devices and on one device.
  block = resnet.BasicBlock(8, strides=2)
  x = _shard_dependent_batch()
  rng = np.random.default_rng(1)
  abstract = jax.eval_shape(functools.partial(block.init, train=False),
                            {'params': jax.random.key(0, impl='rbg')}, x)
  variables = {'params': jax.tree.map(
      lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), abstract['params']),
               'batch_stats': jax.tree.map(lambda s: np.ones(s.shape, np.float32),
                                           abstract['batch_stats'])}
  step = _train_step(block)
  mesh = devices.make_mesh()
  one = jax.devices()[0]
  single = step(jax.device_put(variables, one), jax.device_put(x, one))
  sharded = step(jax.device_put(variables, devices.replicated(mesh)),
                 jax.device_put(x, devices.data_sharded(mesh)))
  chex.assert_trees_all_close(sharded, single, atol=1e-5, rtol=1e-5)
  assert set(sharded[1]['batch_stats']) == {'bn1', 'bn2', 'downsample_1'}


def test_train_uses_the_batch_and_eval_the_running_averages():
  x = _shard_dependent_batch()
  model = _BatchNorm()
  variables = _variables(4, mean=2.0, var=4.0)
  eval_fn = jax.jit(functools.partial(model.apply, train=False))
  # Evaluation: (x - running mean) / sqrt(running var + eps), one example at a time.
  y = eval_fn(variables, x)
  np.testing.assert_allclose(y, (x - 2.0) / np.sqrt(4.0 + _EPS), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(eval_fn(variables, x[:1]), y[:1], rtol=1e-6, atol=1e-6)
  # Training: normalised by the batch, the running averages move 10% towards its statistics.
  y, state = _train_step(model)(variables, x)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)
  np.testing.assert_allclose(state['batch_stats']['bn']['mean'],
                             0.9 * 2.0 + 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-5)
  y_half, _ = _train_step(model)(variables, x[:8])
  assert not np.allclose(y_half, y[:8], atol=1e-3)  # The batch's other examples matter.
