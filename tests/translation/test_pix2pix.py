"""pix2pix: the U-Net's skips, dropout as noise, the PatchGAN's output size and 70x70 receptive field,
and the objective's definition (cGAN + 100 L1, D's loss halved)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.translation import pix2pix


@pytest.fixture(scope='module')
def unet():
  """A small U-Net (C4-C8-C16-C32 for 16x16 inputs of 5 channels) and its variables."""
  model = pix2pix.UNetGenerator(out_channels=3, features=4, num_downs=4)
  return model, jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 16, 16, 5)))


def test_unet_decoder_layers_read_the_mirrored_encoder_outputs(unet):
  model, variables = unet
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 5))
  seen = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and type(context.module).__name__ in ('Conv',
                                                                                 'ConvTranspose'):
      seen.append((type(context.module).__name__, args[0].shape))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    out = jax.jit(model.apply)(variables, x)
  assert out.shape == (2, 16, 16, 3)
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  # Encoder C4-C8-C16-C32: 16 -> 8 -> 4 -> 2 -> 1.
  assert seen[:4] == [('Conv', (2, 16, 16, 5)), ('Conv', (2, 8, 8, 4)), ('Conv', (2, 4, 4, 8)),
                      ('Conv', (2, 2, 2, 16))]
  # Decoder: the innermost map, then each input doubled by the skip of the same resolution.
  assert seen[4:] == [('ConvTranspose', (2, 1, 1, 32)), ('ConvTranspose', (2, 2, 2, 32)),
                      ('ConvTranspose', (2, 4, 4, 16)), ('ConvTranspose', (2, 8, 8, 8))]


def test_the_outermost_skip_carries_fine_detail_to_the_output(unet):
  """Through the skips, an input pixel's change reaches the output near it (a U-Net without them
  would route it through the 1x1 bottleneck, spreading it everywhere)."""
  model, variables = unet
  x = jax.random.normal(jax.random.key(0), (1, 16, 16, 5))
  grad = jax.jit(jax.grad(lambda v: model.apply(variables, v)[0, 3, 3, 0]))(x)
  assert float(jnp.abs(grad).sum()) > 0
  assert np.abs(grad[0, 2:5, 2:5]).sum() > np.abs(grad[0, 10:, 10:]).sum()


def test_dropout_is_the_noise_at_training_time_only(unet):
  model, variables = unet
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 5))

  @jax.jit
  def run(key):
    return model.apply(variables, x, train=True, rngs={'dropout': key}, mutable=['batch_stats'])[0]

  assert not np.allclose(run(jax.random.key(2)), run(jax.random.key(3)))
  np.testing.assert_allclose(run(jax.random.key(2)), run(jax.random.key(2)))
  evaluate = jax.jit(model.apply)
  np.testing.assert_allclose(evaluate(variables, x), evaluate(variables, x))


def test_patchgan_70_gives_30x30_patches_for_256x256_inputs():
  out = jax.eval_shape(lambda x: pix2pix.PatchGAN().init_with_output(jax.random.key(0), x)[0],
                       jax.ShapeDtypeStruct((2, 256, 256, 6), jnp.float32))
  assert out.shape == (2, 30, 30)
  assert [pix2pix.receptive_field(n) for n in (1, 2, 3, 5)] == [16, 34, 70, 286]


def test_patchgan_70_sees_exactly_a_70x70_patch():
  model = pix2pix.PatchGAN(features=4)
  x = jax.random.normal(jax.random.key(0), (1, 96, 96, 2))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  # Evaluation mode: running statistics, so each output depends on its patch only. Output 4 sees
  # rows 8 * 4 - 23 .. + 69 (padding 1 at strides 1, 2, 4, 8, 8), inside the image.
  grad = jax.jit(jax.grad(lambda v: model.apply(variables, v)[0, 4, 4]))(x)
  rows = np.nonzero(np.abs(np.asarray(grad[0])).sum(axis=(1, 2)))[0]
  cols = np.nonzero(np.abs(np.asarray(grad[0])).sum(axis=(0, 2)))[0]
  assert len(rows) == 70 and rows[0] == 9 and rows[-1] == 78
  assert len(cols) == 70 and cols[-1] - cols[0] == 69


def test_objective_is_cgan_plus_100_l1_and_d_loss_is_halved():
  fake = jnp.full((2, 4, 4, 3), 0.5)
  target = jnp.zeros((2, 4, 4, 3))
  logits = jnp.zeros((2, 3, 3))
  # D(x, G(x)) = 1/2: -log(1/2) + 100 * 0.5.
  np.testing.assert_allclose(pix2pix.generator_loss(logits, fake, target),
                             np.log(2) + 50.0, rtol=1e-6)
  np.testing.assert_allclose(pix2pix.generator_loss(logits, fake, target, gan_weight=0.0), 50.0,
                             rtol=1e-6)
  np.testing.assert_allclose(pix2pix.discriminator_loss(logits, logits), np.log(2), rtol=1e-6)


def test_paper_presets_have_the_reference_counts():
  assert zoo.count_params('pix2pix_unet256') == 54_413_955
  assert zoo.count_params('patchgan_70') == 2_768_705
