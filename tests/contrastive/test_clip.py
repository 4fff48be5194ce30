"""CLIP: the loss against Figure 3, its symmetry and clip, the global batch on 8 devices, the
towers, the end-of-text feature, zero-shot ensembling and the presets' parameter counts."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxpapers import zoo
from jaxpapers.contrastive import clip

RNG = np.random.default_rng(0)
IMAGE_FEATURES = RNG.standard_normal((32, 6)).astype(np.float32)
TEXT_FEATURES = (IMAGE_FEATURES + RNG.standard_normal((32, 6))).astype(np.float32)


def figure3_loss(image_features, text_features, t):
  """A direct NumPy transcription of Figure 3's pseudo-code, in float64, with the clip at 100."""

  def l2_normalize(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)

  def cross_entropy_loss(logits, labels, axis):
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=axis, keepdims=True))
    picked = np.take_along_axis(log_probs, np.expand_dims(labels, axis), axis=axis)
    return -np.mean(picked)

  i_e = l2_normalize(np.float64(image_features), axis=1)
  t_e = l2_normalize(np.float64(text_features), axis=1)
  logits = np.dot(i_e, t_e.T) * min(np.exp(t), 100.0)
  labels = np.arange(len(logits))
  loss_i = cross_entropy_loss(logits, labels, axis=0)
  loss_t = cross_entropy_loss(logits, labels, axis=1)
  return (loss_i + loss_t) / 2


# Compiled once for every test below: eager dispatch of each operation is slow on a shared CPU.
loss_and_grad = jax.jit(jax.value_and_grad(clip.clip_loss, argnums=(0, 1, 2)))


def loss(image, text, t):
  return loss_and_grad(image, text, jnp.float32(t))[0]


@pytest.mark.parametrize('t', [0.0, clip.INIT_LOG_LOGIT_SCALE, 3.5, 6.0])
def test_loss_matches_figure3(t):
  loss_value = loss(IMAGE_FEATURES, TEXT_FEATURES, t)
  np.testing.assert_allclose(loss_value, figure3_loss(IMAGE_FEATURES, TEXT_FEATURES, t), rtol=1e-5)


def test_swapping_the_towers_gives_the_same_loss_and_scale_does_not_matter():
  t = clip.INIT_LOG_LOGIT_SCALE
  original = loss(IMAGE_FEATURES, TEXT_FEATURES, t)
  np.testing.assert_allclose(loss(TEXT_FEATURES, IMAGE_FEATURES, t), original, rtol=1e-6)
  # Features are normalised: rescaling a row changes nothing.
  rescaled = IMAGE_FEATURES * RNG.uniform(0.1, 10.0, (32, 1)).astype(np.float32)
  np.testing.assert_allclose(loss(rescaled, TEXT_FEATURES, t), original, rtol=1e-5)
  # Matching pairs on the diagonal: permuting the texts alone raises the loss.
  assert loss(IMAGE_FEATURES, TEXT_FEATURES[::-1], t) > original + 0.5


def test_temperature_starts_at_0_07_and_the_scale_is_clipped_at_100():
  log_100 = math.log(100.0)
  at_clip, above, below = (loss_and_grad(IMAGE_FEATURES, TEXT_FEATURES, jnp.float32(t))
                           for t in (log_100, log_100 + 2.0, log_100 - 0.5))
  np.testing.assert_allclose(above[0], at_clip[0], rtol=1e-6)
  assert abs(float(below[0]) - float(at_clip[0])) > 1e-3
  assert above[1][2] == 0.0 and below[1][2] != 0.0  # No gradient to the log-scale above the clip.
  np.testing.assert_allclose(math.exp(clip.INIT_LOG_LOGIT_SCALE), 1 / 0.07, rtol=1e-12)


def test_global_batch_loss_on_eight_devices_equals_one_device():
  assert jax.device_count() == 8
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  rows = NamedSharding(mesh, P('data'))
  image, text = jax.device_put(IMAGE_FEATURES, rows), jax.device_put(TEXT_FEATURES, rows)
  t = jax.device_put(jnp.float32(2.0), NamedSharding(mesh, P()))
  expected = figure3_loss(IMAGE_FEATURES, TEXT_FEATURES, 2.0)
  single = loss_and_grad(IMAGE_FEATURES, TEXT_FEATURES, jnp.float32(2.0))
  sharded_jit = loss_and_grad(image, text, t)  # XLA forms the global [32, 32] logits itself.
  shard_map = jax.jit(jax.value_and_grad(clip.sharded_clip_loss(mesh), argnums=(0, 1, 2)))(
      image, text, t)
  for value, grads in (single, sharded_jit, shard_map):
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    chex.assert_trees_all_close(grads, single[1], rtol=1e-4, atol=1e-6)
  # Losses over each device's 4 pairs only (no gather) would be a different, smaller number.
  local = np.mean([figure3_loss(IMAGE_FEATURES[i:i + 4], TEXT_FEATURES[i:i + 4], 2.0)
                   for i in range(0, 32, 4)])
  assert local < expected - 0.5


TINY = dict(embed_dim=12, vision_width=16, vocab_size=20, context_length=8, text_width=16,
            text_layers=1, text_heads=2, vision_heads=2)
TOKENS = np.array([[18, 3, 4, 19, 0, 0, 0, 0],  # end of text (19, the highest id) at 3
                   [18, 5, 19, 0, 0, 0, 0, 0]], np.int32)


@pytest.fixture(scope='module')
def vit_clip():
  """A tiny ViT CLIP, its parameters, and its outputs on TOKENS and on two variants of them."""
  model = clip.CLIP(vision_layers=1, vision_patch_size=8, **TINY)
  images = RNG.standard_normal((2, 32, 24, 3)).astype(np.float32)
  changed_padding = TOKENS.copy()
  changed_padding[:, 5:] = 7
  changed_word = TOKENS.copy()
  changed_word[0, 1] = 9
  tokens = np.concatenate([TOKENS, changed_padding, changed_word])

  @jax.jit  # One compilation: slow on a shared CPU.
  def run(key):
    params = model.init(key, images, TOKENS)['params']
    outputs = model.apply({'params': params}, np.concatenate([images] * 3), tokens)
    return params, outputs

  return model, images, *run(jax.random.key(0))


def test_vit_clip_towers_shapes_and_layout(vit_clip):
  model, images, params, (image, text, log_scale) = vit_clip
  chex.assert_shape([params['visual']['conv1']['kernel'], params['visual']['class_embedding'],
                     params['visual']['positional_embedding'], params['visual']['proj'],
                     params['text']['token_embedding']['embedding'],
                     params['text']['positional_embedding'], params['text']['text_projection'],
                     params['logit_scale']],
                    [(8, 8, 3, 16), (16,), (4 * 3 + 1, 16), (16, 12), (20, 16), (8, 16), (16, 12),
                     ()])
  assert 'bias' not in params['visual']['conv1']
  assert {'ln_pre', 'ln_post', 'transformer'} <= set(params['visual'])
  assert set(params['visual']['transformer']['resblocks_0']['mlp']) == {'c_fc', 'c_proj'}
  np.testing.assert_allclose(params['logit_scale'], math.log(1 / 0.07), rtol=1e-6)
  np.testing.assert_allclose(log_scale, params['logit_scale'])
  chex.assert_shape([image, text], [(6, 12), (6, 12)])
  # The image tower runs alone (method='encode_image'); traced only, not compiled.
  alone = jax.eval_shape(
      lambda p: model.apply({'params': p}, images, method='encode_image'), params)
  chex.assert_shape(alone, (2, 12))
  np.testing.assert_allclose(clip.quick_gelu(jnp.float32(1.0)), 1 / (1 + math.exp(-1.702)),
                             rtol=1e-6)


def test_text_feature_is_taken_at_the_end_of_text_token(vit_clip):
  *_, (_, text, _) = vit_clip
  features, changed_padding, changed_word = text[:2], text[2:4], text[4:]
  # Under the causal mask the end-of-text state sees nothing after it: changing the padding leaves
  # the feature unchanged (the last position's state would change); changing a word before it not.
  chex.assert_trees_all_close(changed_padding, features, rtol=1e-5, atol=1e-6)
  assert np.abs(changed_word[0] - features[0]).max() > 1e-4
  chex.assert_trees_all_close(changed_word[1], features[1], rtol=1e-5, atol=1e-6)
  # eot_features picks row b's state at the argmax of its tokens.
  states = RNG.standard_normal((2, 8, 3)).astype(np.float32)
  np.testing.assert_array_equal(clip.eot_features(states, TOKENS), states[[0, 1], [3, 2]])


def test_modified_resnet_tower_layout():
  """Traced only (jax.eval_shape): compiling the initialisers of a ResNet is slow on a CPU."""
  tower = clip.ModifiedResNet(layers=(2, 1, 1, 1), output_dim=12, heads=2, width=8)
  images = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  variables = jax.eval_shape(tower.init, jax.random.key(1), images)
  params = jax.tree.map(lambda x: x.shape, variables['params'])
  # The 3-convolution stem; 64 pixels / 32 = a 2x2 final map of 32 * 8 = 256 channels, so the
  # attention pool has 2 * 2 + 1 positions (the mean first).
  assert (params['conv1']['kernel'], params['conv2']['kernel'], params['conv3']['kernel']) == (
      (3, 3, 3, 4), (3, 3, 4, 4), (3, 3, 4, 8))
  assert params['attnpool']['positional_embedding'] == (5, 256)
  assert params['attnpool']['attn']['out']['kernel'] == (256, 12)
  # A shortcut projection where the width or resolution changes only.
  assert all('downsample_conv' in params[f'layer{i}_0'] for i in range(1, 5))
  assert 'downsample_conv' not in params['layer1_1']
  assert params['layer4_0']['conv3']['kernel'] == (1, 1, 64, 256)
  assert set(variables['batch_stats']['bn1']) == {'mean', 'var'}
  chex.assert_shape(jax.eval_shape(tower.apply, variables, images), (2, 12))


def test_bottleneck_pools_before_its_strided_path():
  """Anti-aliasing: with stride 2 the 3x3 convolution runs at full resolution, then 2x2 average."""
  block = clip.Bottleneck(planes=4, stride=2)
  x = RNG.standard_normal((1, 8, 8, 16)).astype(np.float32)

  @jax.jit  # One compilation.
  def run(key):
    variables = block.init(key, x, train=False)
    trained = block.apply(variables, x, train=True, mutable=['batch_stats'])
    return variables, block.apply(variables, x, train=False), trained

  variables, out, (_, updates) = run(jax.random.key(0))
  params = variables['params']
  assert params['conv2']['kernel'].shape == (3, 3, 4, 4)
  assert params['downsample_conv']['kernel'].shape == (1, 1, 16, 16)
  chex.assert_shape(out, (1, 4, 4, 16))
  np.testing.assert_array_equal(params['bn3']['scale'], 0.0)  # the last gain starts at zero
  # With the residual branch zeroed the output is relu(BN(conv(avgpool(x)))), BN at its initial
  # running statistics (mean 0, variance 1).
  pooled = x.reshape(1, 4, 2, 4, 2, 16).mean(axis=(2, 4))
  kernel = params['downsample_conv']['kernel'][0, 0]
  expected = np.maximum(pooled @ kernel / np.sqrt(1 + 1e-5), 0.0)
  chex.assert_trees_all_close(out, expected, rtol=1e-4, atol=1e-5)
  # In training the running statistics move (PyTorch momentum 0.1: 0.9 old + 0.1 batch).
  batch_mean = np.asarray(pooled @ kernel).mean(axis=(0, 1, 2))
  chex.assert_trees_all_close(updates['batch_stats']['downsample_bn']['mean'], 0.1 * batch_mean,
                              rtol=1e-4, atol=1e-6)


def _text_count(vocab, context, width, layers, embed):
  return vocab * width + context * width + layers * (12 * width ** 2 + 13 * width) + 2 * width \
      + width * embed


def _vit_count(width, layers, patch, embed, resolution=224):
  return 3 * patch ** 2 * width + width + ((resolution // patch) ** 2 + 1) * width + 2 * width \
      + layers * (12 * width ** 2 + 13 * width) + 2 * width + width * embed


def _resnet_count(width, stages, embed, resolution=224):
  half = width // 2
  total = 27 * half + 2 * half + 9 * half ** 2 + 2 * half + 9 * half * width + 2 * width
  channels = width
  for stage, blocks in enumerate(stages):
    planes = width * 2 ** stage
    for block in range(blocks):
      total += channels * planes + 13 * planes ** 2 + 12 * planes
      if block == 0:  # the shortcut's 1x1 convolution and BatchNorm
        total += 4 * planes * channels + 8 * planes
      channels = 4 * planes
  pooled = 32 * width
  return total + ((resolution // 32) ** 2 + 1) * pooled + 3 * (pooled ** 2 + pooled) \
      + pooled * embed + embed


@pytest.mark.parametrize('name, closed_form', [
    ('clip_rn50',
     _resnet_count(64, (3, 4, 6, 3), 1024) + _text_count(49408, 77, 512, 12, 1024) + 1),
    ('clip_vit_b32', _vit_count(768, 12, 32, 512) + _text_count(49408, 77, 512, 12, 512) + 1),
    ('clip_vit_b16', _vit_count(768, 12, 16, 512) + _text_count(49408, 77, 512, 12, 512) + 1),
    ('clip_vit_l14', _vit_count(1024, 24, 14, 768) + _text_count(49408, 77, 768, 12, 768) + 1),
])
def test_preset_counts_equal_closed_forms_and_openai(name, closed_form):
  # openai/CLIP model.parameters() totals (tests/test_zoo.py checks zoo.count_params against them).
  openai = {'clip_rn50': 102_007_137, 'clip_vit_b32': 151_277_313, 'clip_vit_b16': 149_620_737,
            'clip_vit_l14': 427_616_513}[name]
  assert closed_form == openai == zoo.get(name).reference_params


def test_preset_layout_vit_b32_and_rn50():
  b32 = zoo.abstract_variables('clip_vit_b32')['params']
  chex.assert_shape([b32['visual']['positional_embedding'], b32['text']['positional_embedding'],
                     b32['text']['token_embedding']['embedding'], b32['visual']['proj']],
                    [(50, 768), (77, 512), (49408, 512), (768, 512)])
  assert len([k for k in b32['text']['transformer'] if k.startswith('resblocks_')]) == 12
  rn50 = zoo.abstract_variables('clip_rn50')['params']
  chex.assert_shape(rn50['visual']['attnpool']['positional_embedding'], (50, 2048))
  assert (zoo.num_params(b32), zoo.num_params(rn50)) == (151_277_313, 102_007_137)
