"""The phase decomposition of transposed convolutions equals flax's dilated form, values and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxpapers.nn.conv_transpose import ConvTranspose, conv_transpose

CASES = [  # spatial, window, strides, padding of the dilated input
    ((8, 8), (4, 4), (2, 2), ((2, 2), (2, 2))),  # DCGAN's stride-2 layers (PyTorch padding 1)
    ((1, 1), (4, 4), (1, 1), ((3, 3), (3, 3))),  # DCGAN's first layer: z to 4x4
    ((5, 7), (3, 3), (2, 2), ((1, 2), (1, 2))),  # odd sizes, a stride-2 3x3 ('SAME'-like)
    ((6, 5), (5, 2), (3, 2), ((0, 4), (1, 0))),  # uneven strides, windows and padding
    ((4, 4), (1, 1), (2, 2), ((0, 1), (0, 1))),  # a window smaller than the stride: empty phases
    ((9,), (4,), (2,), ((2, 2),)),  # 1-D
]


@pytest.mark.parametrize('spatial, window, strides, padding', CASES)
def test_matches_flax_conv_transpose_and_its_gradients(spatial, window, strides, padding):
  x = jax.random.normal(jax.random.key(0), (2, *spatial, 3))
  reference = nn.ConvTranspose(4, window, strides=strides, padding=padding, use_bias=True,
                               bias_init=nn.initializers.normal(1.0))
  ours = ConvTranspose(4, window, strides=strides, padding=padding,
                       bias_init=nn.initializers.normal(1.0))
  variables = reference.init(jax.random.key(1), x)
  chex.assert_trees_all_equal_shapes(ours.init(jax.random.key(1), x), variables)

  def loss(module):
    return jax.jit(jax.value_and_grad(
        lambda v, x: jnp.sum(jnp.sin(module.apply(v, x))), argnums=(0, 1)))(variables, x)

  want, got = loss(reference), loss(ours)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-4)
  out = jax.jit(ours.apply)(variables, x)
  chex.assert_trees_all_close(out, reference.apply(variables, x), rtol=1e-4, atol=1e-5)


def test_no_output_is_an_error():
  with pytest.raises(ValueError, match='no output'):
    conv_transpose(jnp.zeros((1, 2, 2, 1)), jnp.zeros((5, 5, 1, 1)), (1, 1), ((0, 0), (0, 0)))
