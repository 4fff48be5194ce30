"""ViT: patching, shapes, pre-norm blocks, heads, presets."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.transformers import vit

WIDTH = 8


def _tiny(**overrides) -> vit.ViT:
  return vit.ViT(**{**dict(num_classes=10, patch_size=8, hidden_dim=WIDTH, num_layers=2,
                           num_heads=2, mlp_dim=16, representation_size=5), **overrides})


# 32x24 pixels in 8x8 patches: 4 x 3 = 12 patches (plus the class token).
_IMAGES = np.random.default_rng(0).standard_normal((2, 32, 24, 3), np.float32)


@pytest.fixture(scope='module')
def params():
  return jax.jit(_tiny().init)(jax.random.key(0), _IMAGES)['params']  # Compiled once: it is slow.


def _without(params, *names):
  return {k: v for k, v in params.items() if k not in names}


def test_tiny_forward_shapes_and_patch_count(params):
  chex.assert_shape([params['pos_embedding'], params['cls'], params['embedding']['kernel'],
                     params['pre_logits']['kernel'], params['head']['kernel']],
                    [(1, 13, WIDTH), (1, 1, WIDTH), (8, 8, 3, WIDTH), (WIDTH, 5), (5, 10)])
  assert {f'encoderblock_{i}' for i in range(2)} <= set(params)
  features = _tiny(num_classes=None, representation_size=None)

  @jax.jit
  def run(params):
    return (_tiny().apply({'params': params}, _IMAGES),
            features.apply({'params': _without(params, 'head', 'pre_logits')}, _IMAGES))

  logits, y = run(params)
  chex.assert_shape([logits, y], [(2, 10), (2, WIDTH)])
  np.testing.assert_array_equal(logits, 0.0)  # Zero-initialised head (section 3.2).
  # Eq. 4: y = LN(z_L^0), so the features are normalised.
  chex.assert_trees_all_close(y.mean(-1), np.zeros(2), atol=1e-5)
  with pytest.raises(ValueError, match='patch size'):
    jax.eval_shape(_tiny().init, jax.random.key(0), jnp.zeros((1, 30, 24, 3)))


def test_patch_embedding_sees_each_patch_once(params):
  """Eq. 1: token n depends only on patch n (raster order), and the class token on no patch."""
  changed = _IMAGES.copy()
  changed[:, 8:16, :8] += 1.0  # Patch (1, 0): the fourth in raster order over 3 columns.
  no_blocks = _tiny(num_layers=0, num_classes=None, representation_size=None)
  kernel = params['embedding']['kernel']

  @jax.jit
  def run(images):
    tokens = jax.lax.conv_general_dilated(images, kernel, (8, 8), 'VALID',
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return tokens.reshape(2, 12, WIDTH), no_blocks.apply(
        {'params': _without(params, 'head', 'pre_logits', 'encoderblock_0', 'encoderblock_1')},
        images)

  (tokens, y), (tokens_changed, y_changed) = run(_IMAGES), run(changed)
  diff = np.abs(tokens_changed - tokens).max(-1)
  assert np.all(diff[:, 3] > 1e-3) and np.all(np.delete(diff, 3, axis=1) < 1e-6)
  # With no blocks the class token reaches the final norm untouched by the image.
  chex.assert_trees_all_close(y, y_changed)


def test_encoder_block_is_pre_norm(params):
  """Eqs. 2-3: with both residual branches silenced a block is the identity."""
  x = 4.0 + 3.0 * np.random.default_rng(2).standard_normal((2, 5, WIDTH), np.float32)
  block = vit.EncoderBlock(num_heads=2, mlp_dim=16)
  block_params = params['encoderblock_0']

  @jax.jit
  def run(x):
    silenced = jax.tree_util.tree_map_with_path(
        lambda path, p: jnp.zeros_like(p) if 'out' in str(path) or 'fc2' in str(path) else p,
        block_params)
    return (block.apply({'params': block_params}, x, train=False),
            block.apply({'params': silenced}, x, train=False))

  out, identity = run(x)
  chex.assert_trees_all_close(identity, x, atol=1e-6)
  assert not np.allclose(out, x, atol=1e-3)


@pytest.mark.parametrize('name', ['vit_b16', 'vit_b32', 'vit_l16', 'vit_h14'])
def test_zoo_counts_match_timm(name):
  assert zoo.count_params(name) == zoo.get(name).reference_params
