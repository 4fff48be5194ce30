"""The shared style-GAN layers against their definitions: FIR resampling equals scipy's upfirdn,
demodulation keeps unit variance, the equalised learning rate's scaling, pixel norm, minibatch std."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxpapers.gans import style_layers as sl


@pytest.mark.parametrize('up,down,taps', [(1, 1, (1, 3, 3, 1)), (2, 1, (1, 3, 3, 1)),
                                          (1, 2, (1, 2, 1)), (3, 2, (0.5, 1.0, -0.2, 0.7, 0.1))])
def test_upfirdn2d_equals_scipy_upfirdn_on_random_inputs(up, down, taps):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
  h = np.asarray(taps, np.float64)
  # scipy: upsample (len - 1) * up + 1 samples, the full convolution, then every down-th.
  expected = scipy.signal.upfirdn(h, x.astype(np.float64), up=up, down=down, axis=1)
  expected = scipy.signal.upfirdn(h, expected, up=up, down=down, axis=2)
  # The same with zero insertion to len * up: the full convolution pads len(h) - 1 on the left and
  # len(h) - 1 - (up - 1) on the right.
  left, right = len(h) - 1, len(h) - 1 - (up - 1)
  f = np.outer(h, h).astype(np.float32)
  got = sl.upfirdn2d(jnp.asarray(x), f, up=up, down=down, padding=(left, right, left, right))
  n_h, n_w = expected.shape[1], expected.shape[2]
  # The trailing zeros can add one last sample scipy leaves out.
  np.testing.assert_allclose(np.asarray(got)[:, :n_h, :n_w], expected, rtol=1e-4, atol=1e-5)
  assert got.shape[1] - n_h in (0, 1) and got.shape[2] - n_w in (0, 1)


def test_up_and_down_sampling_shapes_and_mean():
  x = jnp.ones((1, 8, 8, 2))
  f = sl.setup_filter()
  up, down = sl.upsample2d(x, f), sl.downsample2d(x, f)
  chex.assert_shape(up, (1, 16, 16, 2))
  chex.assert_shape(down, (1, 4, 4, 2))
  # Away from the zero-padded border a constant image stays constant.
  np.testing.assert_allclose(up[0, 2:-2, 2:-2], 1.0, rtol=1e-6)
  np.testing.assert_allclose(down[0, 1:-1, 1:-1], 1.0, rtol=1e-6)


def test_demodulated_convolution_keeps_unit_variance():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k1, (8, 24, 24, 64))
  weight = jax.random.normal(k2, (3, 3, 64, 32)) * jnp.linspace(0.1, 3.0, 32)  # uneven columns
  styles = jnp.exp(jax.random.normal(k3, (8, 64)))  # styles far from 1
  y = sl.modulated_conv(x, weight, styles)
  interior = y[:, 1:-1, 1:-1, :]
  std = jnp.std(interior, axis=(0, 1, 2))  # per output channel
  np.testing.assert_allclose(std, 1.0, atol=0.06)
  # Without demodulation the scale follows the weights and styles.
  raw = sl.modulated_conv(x, weight, styles, demodulate=False)[:, 1:-1, 1:-1, :]
  assert float(jnp.std(raw)) > 3.0


def test_equalised_dense_scales_weights_at_run_time():
  layer = sl.EqualDense(5, lr_mul=0.01, bias_init=1.0)
  x = jax.random.normal(jax.random.key(1), (4, 16))
  params = layer.init(jax.random.key(0), x)['params']
  # Stored as N(0, 1) / lr_mul; used as stored * lr_mul / sqrt(fan_in): N(0, 1/fan_in) effective.
  assert 50 < float(jnp.std(params['kernel'])) < 200
  expected = x @ (params['kernel'] * 0.01 / 4.0) + params['bias'] * 0.01
  np.testing.assert_allclose(layer.apply({'params': params}, x), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(params['bias'] * 0.01, 1.0, rtol=1e-6)
  conv = sl.EqualConv(4, kernel_size=3)
  img = jax.random.normal(jax.random.key(2), (2, 6, 6, 8))
  cp = conv.init(jax.random.key(0), img)['params']
  np.testing.assert_allclose(
      conv.apply({'params': cp}, img),
      jax.lax.conv_general_dilated(img, cp['kernel'] / np.sqrt(72), (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + cp['bias'],
      rtol=1e-5, atol=1e-5)
  chex.assert_shape(sl.EqualConv(4, down=True).apply({'params': cp}, img), (2, 3, 3, 4))


def test_pixel_norm_and_minibatch_stddev():
  x = jax.random.normal(jax.random.key(0), (8, 3, 3, 6)) * 5.0
  np.testing.assert_allclose(jnp.mean(jnp.square(sl.pixel_norm(x)), axis=-1), 1.0, rtol=1e-5)
  y = sl.minibatch_stddev(x, group_size=4)
  chex.assert_shape(y, (8, 3, 3, 7))
  np.testing.assert_array_equal(y[..., :6], x)
  # Group of example 0: examples 0, 2, 4, 6 (strided).
  group = np.asarray(x)[0::2]
  expected = np.mean(np.std(group, axis=0))
  np.testing.assert_allclose(y[0, :, :, 6], expected, rtol=1e-4)
  np.testing.assert_allclose(y[4, :, :, 6], expected, rtol=1e-4)
