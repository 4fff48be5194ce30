"""StyleGAN3: the Kaiser low-pass filters, the config-T schedule (the reference's layer geometry),
EQ-T of an identity-like input and of one alias-free layer against a naive one, the generator's
parameter count and input transform."""
import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

from jaxpapers.gans import equivariance, stylegan2, stylegan3
from jaxpapers.gans.style_layers import FourierFeatures, lrelu


def test_kaiser_filter_passes_dc_and_attenuates_above_the_stopband():
  # Layer 0 of config T: cutoff 2, half-width 6, upsampled rate 32, 12 taps.
  f = stylegan3.design_lowpass_filter(12, cutoff=2.0, width=12.0, fs=32.0)
  freqs, response = scipy.signal.freqz(f, worN=np.linspace(0, 16, 321), fs=32)
  np.testing.assert_allclose(np.abs(response[0]), 1.0, atol=1e-6)
  assert np.abs(response[freqs >= 8.0]).max() < 1e-2  # stopband f_c + f_h = 8: below -40 dB
  assert np.abs(response[freqs <= 1.0]).min() > 0.9
  radial = stylegan3.design_lowpass_filter(12, cutoff=2.0, width=12.0, fs=32.0, radial=True)
  np.testing.assert_allclose(radial.sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(radial, radial.T, atol=1e-7)
  assert stylegan3.design_lowpass_filter(1, 2.0, 12.0, 32.0) is None


def test_config_t_schedule_has_the_reference_layers_at_1024():
  s = stylegan3.filter_schedule(1024)
  names = [f'L{i}_{size}_{c}' for i, (size, c) in enumerate(zip(s['sizes'], s['channels']))]
  assert names == ['L0_36_512', 'L1_36_512', 'L2_52_512', 'L3_52_512', 'L4_84_512', 'L5_148_512',
                   'L6_148_512', 'L7_276_323', 'L8_276_203', 'L9_532_128', 'L10_1044_81',
                   'L11_1044_51', 'L12_1044_32', 'L13_1024_32', 'L14_1024_3']
  np.testing.assert_allclose(s['cutoffs'][[0, -3, -1]], [2, 512, 512])
  np.testing.assert_allclose(s['sampling_rates'][[0, 2, -1]], [16, 32, 1024])
  # Every non-tRGB layer: a 6-tap-per-unit filter at each resampling, output size as specified.
  for spec in stylegan3.layer_specs(s)[:-1]:
    r = stylegan3.layer_resampling(spec)
    assert r.up_filter.shape == (6 * r.up,) and r.down_filter.shape == (6 * r.down,)
    after_up = (spec.in_size + 2) * r.up + r.padding[0] + r.padding[1] - (6 * r.up - 1)
    assert (after_up - (6 * r.down - 1) + r.down - 1) // r.down == spec.out_size


def _features(size, rate, bandwidth):
  ff = FourierFeatures(16, size, rate, bandwidth)
  w = jax.random.normal(jax.random.key(1), (2, 8))
  variables = ff.init(jax.random.key(0), w)
  return lambda t: ff.apply(variables, w, None if t is None else jnp.asarray(t)), w


def test_eq_t_of_the_fourier_input_sampled_at_the_image_rate_is_high():
  features, _ = _features(32, 32.0, 2.0)
  rng = np.random.default_rng(0)
  integer = equivariance.eq_t(lambda i, t: np.asarray(features(t)), 4, 32, rng)
  fractional = equivariance.eq_t(lambda i, t: np.asarray(features(t)), 4, 32, rng, fractional=True)
  assert integer > 100 and fractional > 45
  # A generator that ignores the transform: equivariance is lost.
  static = equivariance.eq_t(lambda i, t: np.asarray(features(None)), 4, 32, rng)
  assert static < 25


def test_one_alias_free_layer_is_more_equivariant_than_a_naive_upsampling():
  # 16 samples per unit (margin 10) -> 32 per unit, layer 1 of a 32x32 schedule.
  spec = stylegan3.layer_specs(stylegan3.filter_schedule(32, num_layers=4, channel_base=512,
                                                         channel_max=16))[1]
  assert (spec.in_rate, spec.out_rate, spec.in_size, spec.out_size) == (16, 32, 36, 52)
  features, w = _features(36, 16.0, 2.0)
  layer = stylegan3.SynthesisLayer(spec)
  variables = layer.init(jax.random.key(2), features(None), w)

  def alias_free(i, t):  # the margin of 10 output samples dropped
    return np.asarray(layer.apply(variables, features(t), w))[:, 10:-10, 10:-10]

  def naive(i, t):  # nearest-neighbour upsampling and the pointwise LeakyReLU, no filters
    x = jnp.repeat(jnp.repeat(features(t), 2, axis=1), 2, axis=2)
    return np.asarray(lrelu(x))[:, 20:-20, 20:-20]

  good = equivariance.eq_t(alias_free, 4, 32, np.random.default_rng(0), fractional=True)
  bad = equivariance.eq_t(naive, 4, 32, np.random.default_rng(0), fractional=True)
  assert good > 45 and good > bad + 20, (good, bad)


def test_fractional_translation_moves_a_band_limited_signal():
  x = np.sin(2 * np.pi * 2 * (np.arange(64) + 0.5) / 64)
  image = np.broadcast_to(x[None, None, :, None], (1, 8, 64, 1)).astype(np.float64)
  moved, mask = equivariance.fractional_translation(image, 2.5, 0.0)
  expected = np.sin(2 * np.pi * 2 * (np.arange(64) + 0.5 - 2.5) / 64)
  valid = mask[0, 4, :, 0] > 0
  np.testing.assert_allclose(moved[0, 4, valid, 0], expected[valid], atol=2e-3)
  assert valid.sum() == 64 - 5 and not valid[:5].any()


def test_generator_counts_shapes_and_input_translation():
  kw = dict(z_dim=8, w_dim=8, channel_base=64, channel_max=8, num_layers=4, margin_size=4)
  g = stylegan3.Generator(resolution=16, channels=3, **kw)
  z = jax.random.normal(jax.random.key(0), (2, 8))
  variables = g.init(jax.random.key(1), z)
  assert sum(p.size for p in jax.tree.leaves(variables['params'])) == stylegan3.reference_counts(
      16, **kw)
  ws = g.apply(variables, z, method='mapping_ws')
  assert ws.shape == (2, g.num_ws, 8) and g.num_ws == 6
  images = g.apply(variables, ws, method='synthesize')
  assert images.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.isfinite(images)))
  moved = g.apply(variables, ws, jnp.asarray(equivariance.translation_matrix(0.25, 0)),
                  method='synthesize')
  assert not np.allclose(moved, images)
  # StyleGAN2 with the Fourier input takes the same transform; with the constant it refuses one.
  g2 = stylegan2.Generator(resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=32,
                           channel_max=8, fourier_input=True)
  v2 = g2.init(jax.random.key(1), z)
  ws2 = g2.apply(v2, z, method='mapping_ws')
  assert g2.apply(v2, ws2, jnp.eye(3), method='synthesize').shape == (2, 8, 8, 3)
