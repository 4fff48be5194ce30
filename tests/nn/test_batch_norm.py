"""`jaxpapers.nn.BatchNorm` is flax's BatchNorm computed as one multiply-add per value: the same
variables, outputs, running statistics and gradients to float32 rounding."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn.batch_norm import BatchNorm


@pytest.mark.parametrize('shape, affine', [((8, 6, 6, 16), True), ((32, 24), True),
                                           ((4, 5, 7, 8), False)])
def test_equals_flax_batch_norm_in_training_and_evaluation(shape, affine):
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), shape)  # an offset mean, as activations have
  settings = dict(momentum=0.9, epsilon=1e-5, use_scale=affine, use_bias=affine)
  ours, theirs = BatchNorm(**settings), nn.BatchNorm(**settings)
  variables = theirs.init(jax.random.key(1), x, use_running_average=False)
  chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.key(1), x), variables)
  rng = np.random.default_rng(0)  # non-trivial scale, bias and running statistics
  variables = jax.tree.map(lambda v: v + np.abs(rng.standard_normal(v.shape)).astype(np.float32),
                           variables)

  def train(module):
    def loss(variables, x):
      y, updates = module.apply(variables, x, mutable=['batch_stats'],
                                **({} if module is ours else {'use_running_average': False}))
      return jnp.sum(jnp.sin(y)), (y, updates)
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables, x)

  chex.assert_trees_all_close(train(ours), train(theirs), rtol=1e-4, atol=1e-4)
  evaluate = dict(use_running_average=True)
  np.testing.assert_allclose(BatchNorm(**settings, **evaluate).apply(variables, x),
                             nn.BatchNorm(**settings, **evaluate).apply(variables, x),
                             rtol=1e-5, atol=1e-5)
