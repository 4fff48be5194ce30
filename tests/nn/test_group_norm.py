"""`jaxpapers.nn.GroupNorm` is flax's GroupNorm computed in another order: same parameters, same
outputs to float32 rounding."""

import chex
import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxpapers.nn.group_norm import GroupNorm


@pytest.mark.parametrize('shape, groups', [((4, 8, 8, 32), 8), ((2, 5, 7, 64), 32), ((3, 10, 12), 4),
                                           ((2, 4, 4, 16), 1), ((2, 4, 4, 16), 16)])
def test_equals_flax_group_norm_with_the_same_parameters(shape, groups):
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), shape)  # an offset mean, as activations have
  ours, theirs = GroupNorm(groups), nn.GroupNorm(groups, epsilon=1e-6)
  params = theirs.init(jax.random.key(1), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.key(1), x), params)
  rng = np.random.default_rng(0)  # non-trivial scale and bias
  params = jax.tree.map(lambda p: p + rng.standard_normal(p.shape).astype(np.float32), params)
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)


def test_groups_must_divide_the_channels():
  with pytest.raises(ValueError, match='12 channels do not split into 8 groups'):
    GroupNorm(8).init(jax.random.key(0), jax.numpy.zeros((1, 4, 4, 12)))
