"""The translation-equivariance metric EQ-T of Alias-Free GANs (Karras et al. 2021,
arXiv:2106.12423, sec. 3 and appendix E.1 / E.2).

For a generator g whose input can be moved by a transform t,

    EQ-T = 10 log10(I_max^2 / E_{w, x} [ (g(t_x[z]; w) - t_x[g(z; w)])^2 ]),  I_max = 2,

the squared error taken over the pixels where the translated image t_x[g] is defined (the `mask`)
and all colour channels; x is uniform in [-1/8, 1/8] of the image per axis (the reference's
translate_max = 0.125), one x per batch. `integer_translation` (appendix E.1) rounds x to whole
output pixels and moves the image exactly; `fractional_translation` (E.2, EQ-T_frac) keeps the
sub-pixel offset and interpolates with a Lanczos (a = 3) windowed sinc, the mask dropping the
pixels whose 2a taps leave the image. Both take numpy images [B, H, W, C] and pixel offsets.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PEAK_TO_PEAK = 2.0  # images in [-1, 1]
TRANSLATE_MAX = 0.125


def integer_translation(x: np.ndarray, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
  """(x moved by round(dx), round(dy) pixels with zeros where no pixel arrives, the mask of
  defined pixels); positive offsets move content right / down."""
  _, h, w, _ = x.shape
  ix, iy = int(np.rint(dx)), int(np.rint(dy))
  z, m = np.zeros_like(x), np.zeros_like(x)
  if abs(ix) < w and abs(iy) < h:
    z[:, max(iy, 0):h + min(iy, 0), max(ix, 0):w + min(ix, 0)] = (
        x[:, max(-iy, 0):h + min(-iy, 0), max(-ix, 0):w + min(-ix, 0)])
    m[:, max(iy, 0):h + min(iy, 0), max(ix, 0):w + min(ix, 0)] = 1
  return z, m


def lanczos_taps(frac: float, a: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """(offsets k = -(a - 1) .. a, weights sinc(k - frac) sinc((k - frac) / a) normalised to 1)."""
  k = np.arange(2 * a) - (a - 1)
  weights = np.sinc(k - frac) * np.sinc((k - frac) / a)
  return k, weights / weights.sum()


def fractional_translation(x: np.ndarray, dx: float, dy: float,
                           a: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """y[j] = sum_k L(k - f) x[j - i - k] per axis (i = floor(offset), f its fraction): x moved by
  (dx, dy) pixels, band-limited interpolation; the mask keeps the pixels all of whose taps are
  inside the image."""
  _, h, w, _ = x.shape
  y = x
  masks = []
  for axis, offset, size in ((2, dx, w), (1, dy, h)):
    i = int(np.floor(offset))
    taps, weights = lanczos_taps(offset - i, a)
    y = sum(wk * np.roll(y, i + k, axis=axis) for k, wk in zip(taps, weights))
    valid = np.zeros(size, bool)
    valid[max(i + a, 0):min(i - (a - 1), 0) + size] = True
    masks.append(valid)
  mask = (masks[1][:, None] & masks[0][None, :]).astype(x.dtype)[None, :, :, None]
  mask = np.broadcast_to(mask, x.shape)
  return y * mask, mask


def translation_matrix(tx: float, ty: float) -> np.ndarray:
  """The inverse transform that moves the generator's image by (tx, ty) image widths."""
  m = np.eye(3, dtype=np.float32)
  m[:2, 2] = -np.asarray([tx, ty], np.float32)
  return m


def psnr(squared_error_sum: float, count: float, peak_to_peak: float = PEAK_TO_PEAK) -> float:
  return float(20 * np.log10(peak_to_peak) - 10 * np.log10(squared_error_sum / count))


def eq_t(synthesize: Callable[[int, np.ndarray | None], np.ndarray], num_batches: int,
         resolution: int, rng: np.random.Generator, fractional: bool = False,
         translate_max: float = TRANSLATE_MAX) -> float:
  """EQ-T (or EQ-T_frac) in dB of `synthesize(batch_index, transform) -> images [B, R, R, C]`
  (transform None: the untranslated image), averaging the squared error over all batches."""
  total, count = 0.0, 0.0
  for index in range(num_batches):
    t = (rng.uniform(size=2) * 2 - 1) * translate_max
    if not fractional:
      t = np.rint(t * resolution) / resolution
    original = np.asarray(synthesize(index, None))
    moved = np.asarray(synthesize(index, translation_matrix(*t)))
    translate = fractional_translation if fractional else integer_translation
    reference, mask = translate(original, t[0] * resolution, t[1] * resolution)
    total += float(np.sum(np.square(moved - reference) * mask))
    count += float(np.sum(mask))
  return psnr(total, count)
