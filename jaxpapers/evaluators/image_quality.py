"""Full-reference image quality: PSNR and SSIM, as super-resolution papers report them.

* SSIM: "Image Quality Assessment: From Error Visibility to Structural Similarity" (Wang, Bovik,
  Sheikh & Simoncelli 2004), eq. 13: local means, variances and covariance under an 11x11 Gaussian
  window of standard deviation 1.5 (sec. III.C), C1 = (0.01 L)^2, C2 = (0.03 L)^2, averaged over the
  valid window positions (the authors' MATLAB `ssim_index`; scikit-image's
  `structural_similarity(gaussian_weights=True, use_sample_covariance=False)` computes the same).
* PSNR = 10 log10(L^2 / MSE).
* As SRGAN (Ledig et al. 2016, sec. 3.1) and the SR literature: both on the luminance Y of ITU-R
  BT.601 (`luminance`, range 16-235 of L = 255) after removing a border of `crop` pixels (the
  scale factor) from each side.
Functions take batches [B, H, W, 3] in [0, 1] and return one value per image, so evaluation sums
can weight them by the batch mask. scikit-image is not installed here: tests/style/test_image_quality.py
checks `ssim` against a direct NumPy/SciPy evaluation of eq. 13.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_BT601 = np.array([65.481, 128.553, 24.966], np.float32)


def luminance(images: jax.Array) -> jax.Array:
  """RGB in [0, 1] -> Y of BT.601 in [16, 235], [B, H, W]."""
  return 16.0 + jnp.einsum('bhwc,c->bhw', images, _BT601, precision=jax.lax.Precision.HIGHEST)


def _crop(y: jax.Array, crop: int) -> jax.Array:
  return y[:, crop:y.shape[1] - crop, crop:y.shape[2] - crop] if crop else y


def psnr(images: jax.Array, targets: jax.Array, crop: int = 0) -> jax.Array:
  """PSNR in dB on Y (peak 255), [B]."""
  a, b = _crop(luminance(images), crop), _crop(luminance(targets), crop)
  mse = jnp.mean((a - b) ** 2, axis=(1, 2))
  return 10.0 * jnp.log10(255.0 ** 2 / jnp.maximum(mse, 1e-10))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return np.outer(g, g) / np.sum(g) ** 2


def _filter(x: jax.Array, window: np.ndarray) -> jax.Array:
  """Valid 2-D correlation of [B, H, W] with `window`."""
  kernel = jnp.asarray(window, x.dtype)[:, :, None, None]
  return jax.lax.conv_general_dilated(x[..., None], kernel, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      precision=jax.lax.Precision.HIGHEST)[..., 0]


def ssim(images: jax.Array, targets: jax.Array, crop: int = 0) -> jax.Array:
  """Mean SSIM on Y (L = 255) over the valid 11x11 window positions, [B]."""
  x, y = _crop(luminance(images), crop), _crop(luminance(targets), crop)
  window = gaussian_window()
  c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
  mu_x, mu_y = _filter(x, window), _filter(y, window)
  var_x = _filter(x * x, window) - mu_x ** 2
  var_y = _filter(y * y, window) - mu_y ** 2
  cov = _filter(x * y, window) - mu_x * mu_y
  index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
  return jnp.mean(index, axis=(1, 2))
