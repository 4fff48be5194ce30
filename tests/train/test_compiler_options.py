"""The CPU compiler options of `devices.compiler_options` change speed, not results, and reach the
runs whose presets ask for them."""

import re

import chex
import jax
import jax.numpy as jnp
import optax

from experiments.configs import classify, detect
from jaxpapers.convnets import resnet
from jaxpapers.train import devices


def ynn_fusions(compiled) -> int:
  return len(re.findall(r'%ynn_fusion[.0-9]* = ', compiled.as_text()))


def test_cpu_options_hand_elementwise_fusions_to_ynnpack_only_when_asked():
  assert jax.default_backend() == 'cpu'  # the suite runs on CPU (conftest)
  assert devices.compiler_options(False) is None  # XLA's own defaults
  options = devices.compiler_options(True)
  assert options['xla_cpu_experimental_ynn_fusion_type'].split(',') == [
      'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION', 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT',
      'LIBRARY_FUSION_TYPE_REDUCE', 'LIBRARY_FUSION_TYPE_ELTWISE']


def test_presets_default_to_xla_fusion_and_the_cifar_resnets_ask_for_ynnpack():
  # Every preset has the key (so it can be set from the command line), off unless the preset is a
  # batch-normed residual network's training recipe.
  assert classify.get_config('digits_cnn').train.cpu_ynnpack_eltwise is False
  assert detect.get_config('vild_scenes').train.cpu_ynnpack_eltwise is False
  assert classify.get_config('cifar10_resnet20').train.cpu_ynnpack_eltwise is True


def test_resnet_block_train_step_is_the_same_with_and_without_the_options():
  # A residual block: the convolutions, batch norm and ReLU whose fusions the options change.
  model = resnet.BasicBlock(16)
  images = jax.random.normal(jax.random.key(0), (8, 16, 16, 16))
  variables = model.init(jax.random.key(1), images, train=False)
  tx = optax.sgd(0.1, momentum=0.9)

  def step(params, opt_state):
    def loss_fn(params):
      out, _ = model.apply({**variables, 'params': params}, images, train=True,
                           mutable=['batch_stats'])
      return jnp.mean((out - 1.0) ** 2)
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), grads

  args = (variables['params'], tx.init(variables['params']))
  default = jax.jit(step).lower(*args).compile()
  with_options = jax.jit(step, compiler_options=devices.compiler_options(True)).lower(*args).compile()
  # The options reached the compiler: YNNPACK took the element-wise work too.
  assert ynn_fusions(with_options) > ynn_fusions(default)
  # Same maths in other kernels: equal up to float32 rounding.
  chex.assert_trees_all_close(with_options(*args), default(*args), rtol=1e-4, atol=1e-5)
