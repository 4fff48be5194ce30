"""The DDPM U-Net: paper parameter counts, attention placement, shapes, timestep embedding."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.diffusion import unet


def _reference_unet_params(ch, ch_mult, num_res_blocks, attn_resolutions, scale_shift_norm,
                           out_ch, in_ch=3, size=32):
  """Parameter count of improved-diffusion's UNetModel, layer by layer from its code.

  With scale_shift_norm=False it is also DDPM's TF model (same layers, q/k/v as one 3C projection).
  """
  conv = lambda i, o, k=3: k * k * i * o + o
  norm = lambda c: 2 * c
  emb = 4 * ch
  res_block = lambda i, o: (norm(i) + conv(i, o) + conv(emb, (2 if scale_shift_norm else 1) * o, 1)
                            + norm(o) + conv(o, o) + (0 if i == o else conv(i, o, 1)))
  attn = lambda c: norm(c) + conv(c, 3 * c, 1) + conv(c, c, 1)
  total = conv(ch, emb, 1) + conv(emb, emb, 1) + conv(in_ch, ch)
  skips, c, res = [ch], ch, size
  for level, mult in enumerate(ch_mult):
    for _ in range(num_res_blocks):
      total += res_block(c, mult * ch) + (attn(mult * ch) if res in attn_resolutions else 0)
      c = mult * ch
      skips.append(c)
    if level != len(ch_mult) - 1:
      total += conv(c, c)
      skips.append(c)
      res //= 2
  total += 2 * res_block(c, c) + attn(c)
  for level, mult in reversed(list(enumerate(ch_mult))):
    for _ in range(num_res_blocks + 1):
      total += res_block(c + skips.pop(), mult * ch)
      c = mult * ch
      total += attn(c) if res in attn_resolutions else 0
    if level:
      total += conv(c, c)
      res *= 2
  return total + norm(c) + conv(ch, out_ch)


def test_ddpm_cifar10_has_the_reference_parameter_count():
  preset = zoo.get('ddpm_cifar10')
  assert preset.reference_params == 35_746_307
  assert zoo.count_params('ddpm_cifar10') == preset.reference_params
  assert _reference_unet_params(128, (1, 2, 2, 2), 2, (16,), False, 3) == 35_746_307


def test_iddpm_cifar10_matches_the_improved_diffusion_code():
  preset = zoo.get('iddpm_cifar10')
  assert preset.reference_params is None
  expected = _reference_unet_params(128, (1, 2, 2, 2), 3, (16, 8), True, 6)
  assert zoo.count_params('iddpm_cifar10') == expected == 52_546_438


TINY = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=8,
            dropout=0.1)


def _abstract_variables(model, x, t):
  """The model's variables as shape structs, for inputs shaped like x and t (nothing runs)."""
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  return jax.eval_shape(lambda x, t: model.init(rngs, x, t, train=False), x, t)


def test_attention_follows_the_resolution_rule():
  x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.int32)
  params = _abstract_variables(unet.UNet(**TINY), x, t)['params']
  # 8x8 input: level 0 runs at 8x8 (no attention), level 1 at 4x4 (attention after each block).
  attention = sorted(name for name in params if 'attn' in name)
  assert attention == ['down_1_attn_0', 'mid_attn_1', 'up_1_attn_0', 'up_1_attn_1']
  model = unet.UNet(**(TINY | {'attn_resolutions': (8,)}))
  params = _abstract_variables(model, x, t)['params']
  assert sorted(name for name in params if 'attn' in name) == [
      'down_0_attn_0', 'mid_attn_1', 'up_0_attn_0', 'up_0_attn_1']


def test_learned_sigma_doubles_the_output_and_steps_may_be_real():
  model = unet.UNet(**TINY, learn_sigma=True)
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  t = jax.ShapeDtypeStruct((2,), jnp.float32)
  out = jax.eval_shape(lambda v, x, t: model.apply(v, x, t, train=False),
                       _abstract_variables(model, x, t), x, t)
  assert out.shape == (2, 8, 8, 6) and out.dtype == jnp.float32
  with pytest.raises(ValueError):
    _abstract_variables(model, jax.ShapeDtypeStruct((2, 7, 7, 3), jnp.float32), t)


def test_tiny_forward():
  model = unet.UNet(**TINY, num_heads=2)
  # Rows 0 and 2 are the same input at the same step; row 1 is the same image at another step.
  x = np.tile(np.random.default_rng(2).standard_normal((1, 8, 8, 3), np.float32), (4, 1, 1, 1))
  t = jnp.array([3, 999, 3, 500])
  # Random weights everywhere (init zeroes every residual branch, which would hide the step), and
  # one compiled program: each UNet compilation costs seconds on this machine.
  rng = np.random.default_rng(3)
  variables = jax.tree.map(lambda s: 0.1 * rng.standard_normal(s.shape, np.float32),
                           _abstract_variables(model, x, t))

  @jax.jit
  def evaluate_and_train(variables, x, t):
    return (model.apply(variables, x, t, train=False),
            model.apply(variables, x, t, train=True, rngs={'dropout': jax.random.key(4)}))

  out, train = evaluate_and_train(variables, x, t)
  chex.assert_shape(out, (4, 8, 8, 3))
  chex.assert_type(out, jnp.float32)
  # The output depends on the step; dropout acts only in training, differently for each example.
  np.testing.assert_allclose(out[0], out[2], rtol=1e-6)
  assert not np.allclose(out[0], out[1])
  assert not np.allclose(train[0], train[2])


def test_residual_branches_start_at_zero():
  # As in the DDPM code (init_scale=0): each block starts as the identity.
  x, temb = jnp.zeros((1, 4, 4, 16)), jnp.zeros((1, 64))
  key = jax.random.key(0, impl='rbg')
  block = jax.jit(lambda x, temb: unet.ResnetBlock(16, 0.0, 8, False).init(
      key, x, temb, False)['params'])(x, temb)
  attn = jax.jit(lambda x: unet.AttnBlock(2, 8).init(key, x)['params'])(x)
  np.testing.assert_array_equal(block['conv2']['kernel'], 0.0)
  np.testing.assert_array_equal(attn['proj_out']['kernel'], 0.0)
  assert np.any(block['conv1']['kernel'] != 0) and np.any(attn['q']['kernel'] != 0)


def test_timestep_embedding_is_ddpm_sinusoidal():
  t = jnp.array([0, 1, 17, 999])
  emb = unet.timestep_embedding(t, 8)
  freqs = np.exp(-np.log(10000) * np.arange(4) / 3)
  args = np.asarray(t)[:, None] * freqs
  np.testing.assert_allclose(emb, np.concatenate([np.sin(args), np.cos(args)], 1), atol=1e-4)
  chex.assert_shape(unet.timestep_embedding(t, 9), (4, 9))
