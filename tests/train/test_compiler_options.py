"""The CPU kernel choices of `devices.CPU_KERNELS` change speed, not results, reach the compiler,
and are the ones the presets ask for."""

import re

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from experiments.configs import classify, ddpm, detect, gan
from jaxpapers.convnets import resnet
from jaxpapers.errors import ConfigError
from jaxpapers.train import devices


def test_kernel_choices_by_name():
  assert jax.default_backend() == 'cpu'  # the suite runs on CPU (conftest)
  assert devices.compiler_options('xla') is None  # XLA's own defaults
  assert devices.compiler_options('ynnpack_eltwise')['xla_cpu_experimental_ynn_fusion_type'].split(
      ',') == ['LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION', 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT',
               'LIBRARY_FUSION_TYPE_REDUCE', 'LIBRARY_FUSION_TYPE_ELTWISE']
  assert devices.compiler_options('onednn')['xla_cpu_experimental_onednn_custom_call'] is True
  assert devices.compiler_options('onednn')['xla_cpu_experimental_ynn_fusion_type'] == (
      'LIBRARY_FUSION_TYPE_REDUCE')  # XLA's own large reductions are slow (reduce-windows)
  assert devices.compiler_options('onednn_ynnpack') == {
      **devices.compiler_options('ynnpack_eltwise'), 'xla_cpu_use_onednn': True,
      'xla_cpu_experimental_onednn_custom_call': True}
  with pytest.raises(ConfigError,
                     match="cpu_kernels='mkl'; valid: xla, ynnpack_eltwise, onednn, onednn_ynnpack"):
    devices.compiler_options('mkl')
  # A run's choice, read from its train config; a config built by hand without the key: XLA's.
  assert devices.run_compiler_options({'cpu_kernels': 'onednn'}) is devices.CPU_KERNELS['onednn']
  assert devices.run_compiler_options({'steps': 4}) is None


def test_presets_use_xla_defaults_unless_they_measured_better():
  # Every preset has the key (so it can be set from the command line).
  assert classify.get_config('digits_cnn').train.cpu_kernels == 'xla'
  assert detect.get_config('vild_scenes').train.cpu_kernels == 'xla'
  assert classify.get_config('cifar10_resnet20').train.cpu_kernels == 'onednn_ynnpack'
  assert ddpm.get_config('digits').train.cpu_kernels == 'onednn'
  assert gan.get_config('dcgan_shapes').train.cpu_kernels == 'onednn'
  assert gan.get_config('wgan_gp_digits').train.cpu_kernels == 'xla'


def kernels_used(compiled) -> dict[str, int]:
  text = compiled.as_text()
  return {'ynn_fusion': len(re.findall(r'%ynn_fusion[.0-9]* = ', text)),
          'onednn': len(re.findall(r'custom_call_target="__onednn\$convolution"', text))}


@pytest.mark.parametrize('kernels', ['ynnpack_eltwise', 'onednn', 'onednn_ynnpack'])
def test_resnet_block_train_step_is_the_same_under_each_kernel_choice(kernels):
  # A residual block: the convolutions, batch norm and ReLU whose kernels the choices change.
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
  chosen = jax.jit(step, compiler_options=devices.compiler_options(kernels)).lower(*args).compile()
  # The options reached the compiler: YNNPACK took the element-wise work too, oneDNN some
  # convolutions, or both.
  if 'ynnpack' in kernels:
    assert kernels_used(chosen)['ynn_fusion'] > kernels_used(default)['ynn_fusion']
  if kernels.startswith('onednn'):
    assert kernels_used(chosen)['onednn'] > 0 == kernels_used(default)['onednn']
  # Same maths in other kernels: equal up to float32 rounding.
  chex.assert_trees_all_close(chosen(*args), default(*args), rtol=1e-4, atol=1e-5)
