"""DDPM's linear and Improved DDPM's cosine schedules against independent transcriptions."""
import math

import numpy as np

from jaxpapers.diffusion import schedules


def test_linear_betas_match_ddpm():
  betas = schedules.linear_betas(1000)
  assert betas.shape == (1000,) and betas.dtype == np.float64
  expected = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
  np.testing.assert_allclose(betas, expected, rtol=1e-12)
  np.testing.assert_allclose(schedules.linear_betas(10, 0.1, 0.2)[[0, -1]], [0.1, 0.2])


def test_cosine_betas_match_eq_17():
  num_steps, s = 1000, 0.008
  f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
  alpha_bar = [f(t) / f(0) for t in range(num_steps + 1)]
  expected = [min(1 - alpha_bar[t] / alpha_bar[t - 1], 0.999) for t in range(1, num_steps + 1)]
  betas = schedules.cosine_betas(num_steps)
  assert betas.shape == (num_steps,)
  np.testing.assert_allclose(betas, expected, rtol=1e-10)
  # alpha_bar_T is 0, so the last beta is the clip; every earlier step is unclipped and the
  # cumulative product reproduces f(t) / f(0).
  assert betas[-1] == 0.999 and np.all(betas[:-1] < 0.999)
  np.testing.assert_allclose(np.cumprod(1 - betas)[:-1], alpha_bar[1:-1], rtol=1e-9)


def test_cosine_offset_keeps_first_beta_below_the_pixel_bin():
  # Improved DDPM sec. 3.2: s is chosen so sqrt(beta_1) is slightly below the bin size 1/127.5
  # (at T = 1000 it is about 0.82 of a bin).
  sqrt_beta_1 = math.sqrt(schedules.cosine_betas(1000)[0])
  assert 0.75 / 127.5 < sqrt_beta_1 < 1 / 127.5
  np.testing.assert_allclose(schedules.cosine_alpha_bar(np.array([0.0, 1.0])), [1.0, 0.0],
                             atol=1e-12)
