"""PSNR and SSIM against direct evaluations of their definitions (scikit-image is not installed)."""

import jax.numpy as jnp
import numpy as np
from scipy import signal

from jaxpapers.evaluators import image_quality


def _reference_ssim(x, y):
  """Wang et al. 2004, eq. 13, with NumPy/SciPy: 11x11 Gaussian (1.5), valid windows, L = 255."""
  w = image_quality.gaussian_window()
  def f(a):
    return signal.correlate2d(a, w, mode='valid')
  mx, my = f(x), f(y)
  vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  return np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))


def test_ssim_and_psnr_by_definition():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(2, 24, 20, 3)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
  ya, yb = (np.asarray(image_quality.luminance(jnp.asarray(v)), np.float64) for v in (a, b))
  ours = np.asarray(image_quality.ssim(jnp.asarray(a), jnp.asarray(b)))
  np.testing.assert_allclose(ours, [_reference_ssim(ya[i], yb[i]) for i in range(2)], rtol=1e-4)
  mse = np.mean((ya[:, 2:-2, 2:-2] - yb[:, 2:-2, 2:-2]) ** 2, axis=(1, 2))
  np.testing.assert_allclose(image_quality.psnr(jnp.asarray(a), jnp.asarray(b), crop=2),
                             10 * np.log10(255 ** 2 / mse), rtol=1e-4)


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.uniform(size=(1, 16, 16, 3)), jnp.float32)
  np.testing.assert_allclose(image_quality.ssim(a, a), [1.0], rtol=1e-5)
  noisy = [jnp.clip(a + s * jnp.asarray(rng.normal(size=a.shape), jnp.float32), 0, 1)
           for s in (0.05, 0.2)]
  s1, s2 = (float(image_quality.ssim(n, a)[0]) for n in noisy)
  assert 1.0 > s1 > s2
  assert float(image_quality.psnr(noisy[0], a)[0]) > float(image_quality.psnr(noisy[1], a)[0])
  # Luminance of BT.601: black 16, white 235.
  np.testing.assert_allclose(image_quality.luminance(jnp.ones((1, 1, 1, 3)))[0, 0, 0], 235.0,
                             rtol=1e-5)
