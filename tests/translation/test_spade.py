"""SPADE: modulation shapes, spatially constant gamma/beta for constant label maps, the parameter-free
normalisation it modulates, its locality, the generator's shapes, spectral normalisation, the
multi-scale discriminator, the hinge / feature-matching / VGG losses over scales and the paper-size
parameter counts against the reference's printout."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.style import perceptual
from jaxpapers.translation import pix2pix, spade


def _one_hot(labels, k):
  return jax.nn.one_hot(labels, k)


def test_modulation_has_the_activations_shape_from_a_resized_label_map():
  model = spade.SPADE(hidden=8)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 5))
  labels = _one_hot(jax.random.randint(jax.random.key(1), (2, 32, 32), 0, 3), 3)
  variables = model.init(jax.random.key(2), x, labels)
  seen = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, spade.SPADEModulation):
      seen.append((args[0].shape, out[0].shape, out[1].shape))
    return out

  with nn.intercept_methods(record):
    out = model.apply(variables, x, labels)
  assert out.shape == x.shape
  assert seen == [((2, 8, 8, 3), (2, 8, 8, 5), (2, 8, 8, 5))]
  # BatchNorm without affine parameters: only the modulation convolutions learn.
  assert set(variables['params']) == {'SPADEModulation_0'}
  assert set(variables['batch_stats']['BatchNorm_0']) == {'mean', 'var'}


def test_constant_label_maps_give_spatially_constant_gamma_and_beta():
  model = spade.SPADEModulation(channels=4, hidden=8)
  labels = jnp.broadcast_to(_one_hot(jnp.array(2), 3), (1, 12, 12, 3))
  variables = model.init(jax.random.key(0), labels)
  # Random biases, so the zero padding shows at the border.
  variables = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape),
                           variables)
  for out in model.apply(variables, labels):
    interior = np.asarray(out[0, 2:-2, 2:-2])
    np.testing.assert_allclose(interior, np.broadcast_to(interior[:1, :1], interior.shape),
                               atol=1e-5)
    assert not np.allclose(out[0, 0, 0], out[0, 5, 5], atol=1e-4)  # the border sees the padding
  other = jnp.broadcast_to(_one_hot(jnp.array(0), 3), (1, 12, 12, 3))
  assert not np.allclose(model.apply(variables, other)[0][0, 5, 5],
                         model.apply(variables, labels)[0][0, 5, 5])


def test_spade_modulates_a_parameter_free_batch_norm_locally():
  model = spade.SPADE(hidden=8)
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 16, 16, 2))
  labels = jnp.zeros((4, 16, 16), jnp.int32)
  variables = model.init(jax.random.key(1), x, _one_hot(labels, 3))
  zeroed = jax.tree.map(jnp.zeros_like, variables['params'])
  out, _ = model.apply({**variables, 'params': zeroed}, x, _one_hot(labels, 3), train=True,
                       mutable=['batch_stats'])
  np.testing.assert_allclose(out.mean((0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std((0, 1, 2)), 1.0, atol=1e-3)
  # A label change in one corner moves the output there only (two 3x3 convolutions: 2 pixels).
  changed = labels.at[:, :3, :3].set(1)
  base = model.apply(variables, x, _one_hot(labels, 3))
  moved = model.apply(variables, x, _one_hot(changed, 3))
  diff = np.abs(np.asarray(moved - base)).sum(axis=(0, 3))
  assert diff[:5, :5].sum() > 0 and diff[5:, :].sum() == 0 and diff[:, 5:].sum() == 0


def test_generator_maps_label_maps_to_images_of_their_size():
  model = spade.SPADEGenerator(features=1, hidden=2)
  labels = _one_hot(jax.random.randint(jax.random.key(0), (2, 32, 32), 0, 6), 6)

  variables = model.init(jax.random.key(1), labels)
  out, _ = model.apply(variables, labels, train=True, mutable=['batch_stats'])
  assert out.shape == (2, 32, 32, 3) and float(jnp.max(jnp.abs(out))) <= 1.0


def test_hinge_losses_average_over_scales():
  real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 1.0])
  one_scale = np.mean([0.0, 0.5, 2.0]) + np.mean([0.0, 1.0, 2.0])
  np.testing.assert_allclose(spade.hinge_discriminator_loss([real], [fake]), one_scale, rtol=1e-6)
  np.testing.assert_allclose(spade.hinge_generator_loss([fake]), 1.0 / 3.0, rtol=1e-6)
  # A second scale (its own output size) whose outputs are all past the margins adds 0 to the mean.
  real_2, fake_2 = jnp.full((2, 2), 3.0), jnp.full((2, 2), -3.0)
  np.testing.assert_allclose(spade.hinge_discriminator_loss([real, real_2], [fake, fake_2]),
                             one_scale / 2, rtol=1e-6)
  np.testing.assert_allclose(spade.hinge_generator_loss([fake, fake_2]), (1.0 / 3.0 + 3.0) / 2,
                             rtol=1e-6)


def test_feature_matching_sums_layers_and_averages_scales():
  real = [[jnp.ones((2, 4, 4, 3)), jnp.zeros((2, 2, 2, 5))], [jnp.zeros((2, 2, 2, 3))]]
  fake = [[jnp.ones((2, 4, 4, 3)) * 1.5, jnp.ones((2, 2, 2, 5))], [jnp.full((2, 2, 2, 3), -2.0)]]
  np.testing.assert_allclose(spade.feature_matching_loss(real, real), 0.0)
  np.testing.assert_allclose(spade.feature_matching_loss(real, fake), (0.5 + 1.0 + 2.0) / 2,
                             rtol=1e-6)
  # Real features are constants: the gradient reaches only the fake ones.
  grads = jax.grad(spade.feature_matching_loss, argnums=(0, 1))(real, fake)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grads[0]))
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads[1]))


def test_vgg_loss_weights_the_five_layers_and_is_zero_for_identical_images():
  diffs = {'relu1_1': 32.0, 'relu2_1': 16.0, 'relu3_1': 8.0, 'relu4_1': 4.0, 'relu5_1': 1.0}
  real = {name: jnp.zeros((1, 2, 2, 3)) for name in diffs}
  fake = {name: jnp.full((1, 2, 2, 3), d) for name, d in diffs.items()}
  np.testing.assert_allclose(spade.vgg_loss(fake, real), 5.0, rtol=1e-6)  # each w_l * d_l = 1
  model = zoo.build('vgg19_bn_mini', width_divisor=16)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  phi = perceptual.FeatureExtractor(model, tuple(spade.VGG_LAYER_WEIGHTS), imagenet_inputs=False)

  @jax.jit
  def loss(a, b):
    return spade.vgg_loss(phi(variables, a), phi(variables, b))

  images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  assert float(loss(images, images)) == 0.0
  assert float(loss(images, images[::-1])) > 0.0


class _SpectralConv(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return pix2pix.spectral(nn.Conv(6, (3, 3), use_bias=False), True, train)(x)


def test_spectral_norm_gives_the_kernel_a_largest_singular_value_of_one():
  model = _SpectralConv()
  x = jax.random.normal(jax.random.key(0), (1, 5, 5, 4))
  variables = model.init(jax.random.key(1), x)
  kernel = np.asarray(variables['params']['Conv_0']['kernel'])  # [kh, kw, in, out]
  # The reference's view of a PyTorch weight [out, in, kh, kw]: [out, in * kh * kw].
  largest = np.linalg.svd(kernel.transpose(3, 2, 0, 1).reshape(6, -1), compute_uv=False)[0]

  @jax.jit
  def train_call(stats):
    return model.apply({**variables, 'batch_stats': stats}, x, train=True,
                       mutable=['batch_stats'])[1]['batch_stats']

  stats = variables['batch_stats']
  (sigma_name,) = [k for k in stats['SpectralNorm_0'] if k.endswith('sigma')]
  first = float(train_call(stats)['SpectralNorm_0'][sigma_name])
  assert first <= largest * (1 + 1e-5)  # a power-iteration estimate is a lower bound
  for _ in range(50):
    stats = train_call(stats)
  np.testing.assert_allclose(stats['SpectralNorm_0'][sigma_name], largest, rtol=1e-4)
  # The convolution the module computes is the one of kernel / sigma_max.
  seen = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.Conv) and context.module.variables:  # bound: the kernel it saw
      seen.append(np.asarray(context.module.variables['params']['kernel']))
    return out

  with nn.intercept_methods(record):
    out = model.apply({**variables, 'batch_stats': stats}, x)
  normalised = seen[-1].transpose(3, 2, 0, 1).reshape(6, -1)
  np.testing.assert_allclose(np.linalg.svd(normalised, compute_uv=False)[0], 1.0, rtol=1e-4)
  np.testing.assert_allclose(normalised, kernel.transpose(3, 2, 0, 1).reshape(6, -1) / largest,
                             rtol=1e-4, atol=1e-6)
  plain = nn.Conv(6, (3, 3), use_bias=False).apply({'params': {'kernel': kernel / largest}}, x)
  np.testing.assert_allclose(out, plain, rtol=1e-4, atol=1e-5)
  # Outside training the stored vector does not move.
  _, unchanged = model.apply({**variables, 'batch_stats': stats}, x, mutable=['batch_stats'])
  jax.tree.map(np.testing.assert_array_equal, unchanged['batch_stats'], stats)


def test_downsampling_is_a_3x3_average_that_ignores_the_padding():
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 2))
  out = np.asarray(spade.downsample(x))
  assert out.shape == (1, 3, 3, 2)
  xn = np.asarray(x)[0]
  for i in range(3):
    for j in range(3):
      window = xn[max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
      np.testing.assert_allclose(out[0, i, j], window.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
  assert np.asarray(x)[0, :2, :2].mean(axis=(0, 1)) == pytest.approx(out[0, 0, 0], rel=1e-5)


def test_multiscale_discriminator_outputs_features_per_scale():
  model = spade.MultiscaleDiscriminator(features=4)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 5))
  variables = model.init(jax.random.key(1), x)
  inputs = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, pix2pix.PatchGAN):
      inputs[context.module.name] = args[0]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    (logits, features), state = model.apply(variables, x, train=True, return_features=True,
                                            mutable=['batch_stats'])
  np.testing.assert_allclose(inputs['scale_1'], spade.downsample(x), rtol=1e-6)
  # 4x4 convolutions padded by 2: stride 2 gives n / 2 + 1, stride 1 gives n + 1.
  assert [f.shape for f in features[0]] == [(2, 17, 17, 4), (2, 9, 9, 8), (2, 5, 5, 16),
                                            (2, 6, 6, 32)]
  assert [f.shape for f in features[1]] == [(2, 9, 9, 4), (2, 5, 5, 8), (2, 3, 3, 16),
                                            (2, 4, 4, 32)]
  assert [o.shape for o in logits] == [(2, 7, 7), (2, 5, 5)]
  # Two PatchGANs of their own; the reference's biases (first and last layers only) and one
  # spectral-norm vector per normalised layer, updated in training.
  for scale in ('scale_0', 'scale_1'):
    params = variables['params'][scale]
    assert [('bias' in params[f'Conv_{i}']) for i in range(5)] == [True, False, False, False, True]
    assert len(variables['batch_stats'][scale]) == 3
  assert not np.allclose(jax.tree.leaves(state['batch_stats'])[1],
                         jax.tree.leaves(variables['batch_stats'])[1])


@pytest.mark.parametrize('name, channels, printed', [
    ('generator', 19, '92.5'), ('discriminator', 19 + 3, '5.6')])
def test_paper_size_counts_match_the_reference_printout(name, channels, printed):
  """NVlabs/SPADE prints its totals to 0.1 million; the one printout found is for 19 label
  channels (`--label_nc 19 --no_instance`). The closed forms give the exact counts."""
  model = spade.SPADEGenerator() if name == 'generator' else spade.MultiscaleDiscriminator()
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, channels))))
  count = zoo.num_params(shapes['params'])
  assert count == {'generator': 92_538_819, 'discriminator': 5_566_594}[name]
  assert f'{count / 1e6:.1f}' == printed
  if name == 'generator':  # spectral norm adds no parameters
    plain = spade.SPADEGenerator(spectral_norm=False)
    assert zoo.num_params(jax.eval_shape(lambda: plain.init(
        jax.random.key(0), jnp.zeros((1, 64, 64, channels))))['params']) == count
