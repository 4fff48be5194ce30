"""The phase decomposition of transposed convolutions equals flax's dilated form, values and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxpapers.nn.conv_transpose import ConvTranspose, StridedConv, conv_transpose

CASES = [  # spatial, window, strides, padding of the dilated input
    ((8, 8), (4, 4), (2, 2), ((2, 2), (2, 2))),  # DCGAN's stride-2 layers (PyTorch padding 1)
    ((1, 1), (4, 4), (1, 1), ((3, 3), (3, 3))),  # DCGAN's first layer: z to 4x4
    ((5, 7), (3, 3), (2, 2), ((1, 2), (1, 2))),  # odd sizes, a stride-2 3x3 ('SAME'-like)
    ((6, 5), (5, 2), (3, 2), ((0, 4), (1, 0))),  # uneven strides, windows and padding
    ((4, 4), (1, 1), (2, 2), ((0, 1), (0, 1))),  # a window smaller than the stride: empty phases
    ((9,), (4,), (2,), ((2, 2),)),  # 1-D
]


def flax_and_ours(flax_module, our_module, spatial, window, strides, padding):
  """An input, flax's module, ours with the same settings, and flax's variables (which ours has
  the shapes of), with non-zero biases."""
  x = jax.random.normal(jax.random.key(0), (2, *spatial, 3))
  reference, ours = (module(4, window, strides=strides, padding=padding,
                            bias_init=nn.initializers.normal(1.0))
                     for module in (flax_module, our_module))
  variables = reference.init(jax.random.key(1), x)
  chex.assert_trees_all_equal_shapes(ours.init(jax.random.key(1), x), variables)
  return x, reference, ours, variables


@pytest.mark.parametrize('spatial, window, strides, padding', CASES)
def test_matches_flax_conv_transpose_and_its_gradients(spatial, window, strides, padding):
  x, reference, ours, variables = flax_and_ours(nn.ConvTranspose, ConvTranspose, spatial, window,
                                                strides, padding)

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


STRIDED_CASES = [  # spatial, window, strides, padding
    ((16, 16), (4, 4), (2, 2), ((1, 1), (1, 1))),  # DCGAN's discriminator layers
    ((7, 9), (3, 3), (2, 2), ((1, 1), (1, 1))),  # odd sizes: the last input row reaches no output
    ((10, 6), (5, 2), (3, 2), ((2, 0), (0, 1))),  # uneven strides, windows and padding
    ((9,), (4,), (2,), ((1, 2),)),  # 1-D
]


@pytest.mark.parametrize('spatial, window, strides, padding', STRIDED_CASES)
def test_strided_conv_matches_flax_conv_to_second_order(spatial, window, strides, padding):
  x, reference, ours, variables = flax_and_ours(nn.Conv, StridedConv, spatial, window, strides,
                                                padding)

  def loss(module):
    def value(v, x):
      return jnp.sum(jnp.sin(module.apply(v, x)))
    # A gradient penalty (WGAN-GP's critic) differentiates the input gradient once more.
    def penalty(v, x):
      return jnp.sum(jax.grad(value, argnums=1)(v, x) ** 2)
    return jax.jit(lambda v, x: (jax.value_and_grad(value, argnums=(0, 1))(v, x),
                                 jax.grad(penalty)(v, x)))(variables, x)

  chex.assert_trees_all_close(loss(ours), loss(reference), rtol=1e-4, atol=1e-4)
