"""Noise schedules beta_1..beta_T of Gaussian diffusion models.

Papers:
  * Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239), sec. 4:
    betas increase linearly from beta_1 = 1e-4 to beta_T = 0.02 over T = 1000 steps.
  * Improved Denoising Diffusion Probabilistic Models (Nichol, Dhariwal 2021, arXiv:2102.09672),
    sec. 3.2, eq. 17: alpha_bar(t) = f(t) / f(0) with f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2),
    beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, clipped to at most 0.999 so the last steps stay
    finite.

Index convention used throughout `jaxpapers.diffusion`: array index i = 0..T-1 holds the paper's
step t = i + 1, as in the reference implementations.

Departure: the schedules are host-side float64 NumPy arrays rather than float32 JAX arrays. They are
constants built once; `process.diffusion_coefficients` derives every table from them in float64
(alpha_bar over 1000 steps and 1 - alpha_bar near t = 1 lose digits in float32, which is why the
reference implementations do the same) and only then stores float32 tables for the jitted code.
"""

import numpy as np


def linear_betas(num_steps: int, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
  """DDPM's schedule: `num_steps` betas evenly spaced from `start` to `end` (float64).

  Improved DDPM rescales the endpoints by 1000 / T for T != 1000 (its code, not its text); pass
  `start=1e-4 * 1000 / T, end=0.02 * 1000 / T` for that.
  """
  return np.linspace(start, end, num_steps, dtype=np.float64)


def cosine_alpha_bar(t: np.ndarray, s: float = 0.008) -> np.ndarray:
  """Improved DDPM eq. 17: alpha_bar at fractional time t / T in [0, 1] (float64)."""
  f = lambda u: np.cos((u + s) / (1.0 + s) * np.pi / 2) ** 2
  return f(np.asarray(t, np.float64)) / f(0.0)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Improved DDPM's cosine schedule (eq. 17), betas clipped to `max_beta` (float64)."""
  fractions = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  alpha_bar = cosine_alpha_bar(fractions, s)
  return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
