"""Samplers for a diffusion model trained once with T steps: ancestral, respaced, DDIM, FastDPM.

Papers:
  * Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239),
    Algorithm 2: ancestral sampling x_{t-1} = mu_theta(x_t, t) + sigma_t z, with no noise at the
    last step (`ancestral_sample`; sigma_t^2 = beta_t or beta_tilde_t, sec. 3.2).
  * Improved Denoising Diffusion Probabilistic Models (Nichol, Dhariwal 2021, arXiv:2102.09672),
    sec. 4: sampling on an evenly strided subsequence S of the training steps, with the betas
    recomputed from alpha_bar at the kept steps,
    beta_{S_t} = 1 - alpha_bar_{S_t} / alpha_bar_{S_{t-1}}, and the learned variances interpolating
    between the recomputed beta and beta_tilde (`respace_betas`, `evenly_spaced_timesteps`,
    `respaced_schedule`).
  * Denoising Diffusion Implicit Models (Song, Meng, Ermon 2020, arXiv:2010.02502): eq. 12, the
    generalised update on a subsequence tau, with sigma per eq. 16 scaled by eta (eta = 0:
    deterministic DDIM, eta = 1: DDPM's posterior) (`ddim_sample`); appendix D.2's linear and
    quadratic choices of tau (`step_timesteps`). Eqs. 13-14: with eta = 0 the update is Euler's
    method for dx_bar = eps(x_bar / sqrt(sigma^2 + 1)) d sigma, x_bar = x / sqrt(alpha_bar),
    sigma = sqrt((1 - alpha_bar) / alpha_bar).
  * On Fast Sampling of Diffusion Probabilistic Models (Kong, Ping 2021, arXiv:2106.00132), sec. 4:
    FastDPM builds a length-S approximate diffusion and reverse process from the trained T-step
    model. STEP chooses S of the T steps (`step_timesteps`, linear or quadratic); the noise levels
    are alpha_bar at those steps. VAR chooses a short variance schedule eta_1..eta_S (linear or
    quadratic, `var_betas`) whose product matches alpha_bar_T, and maps each noise level
    gamma_bar_s = prod_{i<=s} (1 - eta_i) to a continuous step through the bijection
    R(t)^2 = alpha_bar(t) = dbeta^t Gamma(c + 1) / Gamma(c - t + 1), c = (1 - beta_1) / dbeta, which
    extends the linear schedule's alpha_bar to real t (`continuous_alphas_cumprod`,
    `var_schedule`); the network is then evaluated at those real steps. The reverse process is
    DDIM's update with sigma scaled by kappa in [0, 1] (kappa = 1 "DDPM-rev", kappa = 0
    "DDIM-rev"): `ddim_sample` with eta = kappa.

Design: a `SamplingSchedule` holds, for S steps, the step fed to the network (`model_t`: the
original 0-based step, or a real number for VAR) and the `process.diffusion_coefficients` of the
S-step process (its betas are the recomputed ones). Schedules are built on the host in float64 from
concrete betas; the samplers are pure JAX: `lax.scan` over the S steps, compiled as one program,
with the model passed in as `eps_fn(x, t) -> eps` or `(eps, v)` (v: the learned-variance output of
Improved DDPM), so they do not depend on Flax. The initial noise x_T and the PRNG key for the
per-step noise are explicit arguments: DDIM with eta = 0 is a deterministic function of x_T.

Departures: FastDPM's code evaluates log Gamma with a Stirling series and bisects to a relative
tolerance; we use the exact log Gamma in float64 and bisect to convergence (checked against the
official functions: the same continuous steps to 1e-4 and the same etas to 1e-5, except below).
Its search for the VAR schedule's free parameter is bracketed (linear: x < 0.99; quadratic:
x < 0.95 / (sqrt(beta_1) S)); for quadratic spacing with S = 10 or 20 and the DDPM schedule that
bracket cannot reach alpha_bar_T (prod(1 - eta) stays near 0.02 and 1.6e-4 instead of 4e-5) and
the official code silently keeps the bracket's end; we search every x that keeps eta < 1, so the
short process always ends at alpha_bar_T as intended. The constants of the step selections
(linear: floor(i (T-1) / (S-1)); quadratic: floor((i sqrt(0.8 T) / (S-1))^2)) come from the
official FastDPM/DDIM code; the papers only say c is chosen so the last step is close to T.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from jaxpapers.diffusion import process

# eps_fn(x [B, ...], t [B]) -> eps, or (eps, v) for a learned-variance model.
EpsFn = Callable[[jax.Array, jax.Array], jax.Array | tuple[jax.Array, jax.Array]]


class SamplingSchedule(NamedTuple):
  """An S-step reverse process of a T-step model. Index s = 0 is the least noisy step."""
  model_t: jax.Array  # [S] the step the network sees: int32 (original steps) or float32 (VAR).
  coefs: process.Coefficients  # diffusion_coefficients of the S recomputed betas.


# --- Choosing the steps ---------------------------------------------------------------------------


def respace_betas(betas, timesteps) -> np.ndarray:
  """Improved DDPM sec. 4: betas of the process restricted to `timesteps` (sorted, 0-based).

  beta'_i = 1 - alpha_bar[timesteps[i]] / alpha_bar[timesteps[i - 1]], with alpha_bar = 1 before the
  first kept step, so the kept steps have exactly the original noise levels alpha_bar.
  """
  timesteps = np.asarray(timesteps)
  if timesteps.ndim != 1 or np.any(np.diff(timesteps) <= 0):
    raise ValueError('timesteps must be a strictly increasing 1-D sequence')
  alphas_cumprod = np.cumprod(1.0 - np.asarray(betas, np.float64))[timesteps]
  return 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])


def evenly_spaced_timesteps(num_timesteps: int, count: int) -> np.ndarray:
  """Improved DDPM sec. 4: `count` evenly strided steps from the first to the last, rounded."""
  return np.unique(np.round(np.linspace(0, num_timesteps - 1, count)).astype(np.int64))


def step_timesteps(num_timesteps: int, count: int, spacing: str = 'linear') -> np.ndarray:
  """DDIM appendix D.2 / FastDPM STEP: tau_i = floor(c i) or floor(c i^2), i = 0..count-1.

  c is (T - 1) / (count - 1) for 'linear' and 0.8 T / (count - 1)^2 for 'quadratic' (the official
  FastDPM/DDIM constants). Quadratic spacing keeps more steps at low noise. Repeated steps are
  dropped (quadratic spacing with count = 50 gives step 0 twice): in the official code a repeated
  step is a no-op update that only costs a network evaluation, so the samples are the same.
  """
  if count < 2:
    raise ValueError(f'need at least 2 steps, got {count}')
  i = np.arange(count, dtype=np.float64)
  if spacing == 'linear':
    steps = np.floor(i * (num_timesteps - 1.0) / (count - 1.0))
  elif spacing == 'quadratic':
    # linspace ends exactly at sqrt(0.8 T), so the last step is exactly 0.8 T.
    steps = np.floor(np.linspace(0.0, np.sqrt(0.8 * num_timesteps), count) ** 2)
  else:
    raise ValueError(f"spacing must be 'linear' or 'quadratic', got {spacing!r}")
  return np.unique(steps.astype(np.int64))


# --- Building schedules --------------------------------------------------------------------------


def respaced_schedule(betas, timesteps=None) -> SamplingSchedule:
  """The reverse process on `timesteps` (all T steps when None), for any sampler below."""
  betas = np.asarray(betas, np.float64)
  if timesteps is None:
    timesteps = np.arange(betas.shape[0])
  return SamplingSchedule(jnp.asarray(timesteps, jnp.int32),
                          process.diffusion_coefficients(respace_betas(betas, timesteps)))


def continuous_alphas_cumprod(t, beta_start: float, beta_end: float,
                              num_timesteps: int) -> np.ndarray:
  """FastDPM's alpha_bar at real 0-based steps t of a linear schedule (float64).

  With beta_i = beta_1 + (i - 1) dbeta, 1 - beta_i = dbeta (c - i + 1), so
  alpha_bar(n) = prod_{i<=n} (1 - beta_i) = dbeta^n Gamma(c + 1) / Gamma(c - n + 1) for the paper's
  1-based n = t + 1; exact at integer steps, smooth and decreasing in between.
  """
  dbeta = (beta_end - beta_start) / (num_timesteps - 1)
  c = (1.0 - beta_start) / dbeta
  n = np.asarray(t, np.float64) + 1.0
  return np.exp(n * np.log(dbeta) + special.gammaln(c + 1.0) - special.gammaln(c - n + 1.0))


def _bisect(f: Callable[[np.ndarray], np.ndarray], lo, hi, iterations: int = 200) -> np.ndarray:
  """Root of an increasing f on [lo, hi], elementwise."""
  lo, hi = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
  lo, hi = lo.copy(), hi.copy()
  for _ in range(iterations):
    mid = (lo + hi) / 2
    above = f(mid) > 0
    hi = np.where(above, mid, hi)
    lo = np.where(above, lo, mid)
  return (lo + hi) / 2


def var_betas(count: int, beta_start: float = 1e-4, beta_end: float = 0.02,
              num_timesteps: int = 1000, spacing: str = 'linear') -> np.ndarray:
  """FastDPM VAR: a `count`-step variance schedule eta with prod(1 - eta) = alpha_bar_T.

  'linear': eta_i = linspace(beta_start, x, count); 'quadratic': eta_i = beta_start (1 + i x)^2;
  x is solved for so the short process ends at the trained process's final noise level, over every
  x that keeps all eta_i < 1.
  """
  if count < 2:
    raise ValueError(f'need at least 2 steps, got {count}')
  target = np.log(np.prod(1.0 - np.linspace(beta_start, beta_end, num_timesteps)))
  i = np.arange(count, dtype=np.float64)
  if spacing == 'linear':
    etas = lambda x: beta_start + (x - beta_start) * i[:, None] / (count - 1)
    lo, hi = beta_start, 1.0
  elif spacing == 'quadratic':
    etas = lambda x: beta_start * (1.0 + i[:, None] * x) ** 2
    lo, hi = 0.0, (1.0 / np.sqrt(beta_start) - 1.0) / (count - 1)
  else:
    raise ValueError(f"spacing must be 'linear' or 'quadratic', got {spacing!r}")
  log_final = lambda x: np.sum(np.log1p(-etas(np.atleast_1d(x))), axis=0)
  x = _bisect(lambda x: target - log_final(x), lo, hi)
  return etas(np.atleast_1d(x))[:, 0]


def var_schedule(etas, beta_start: float = 1e-4, beta_end: float = 0.02,
                 num_timesteps: int = 1000) -> SamplingSchedule:
  """FastDPM VAR: the reverse process of variance schedule `etas` for a linear-schedule model.

  Each noise level gamma_bar_s = prod_{i<=s} (1 - eta_i) is mapped to the real step t_s with
  alpha_bar(t_s) = gamma_bar_s (`continuous_alphas_cumprod` inverted by bisection, clipped to
  [0, T - 1] like the official code), and the network is evaluated at t_s.
  """
  etas = np.asarray(etas, np.float64)
  log_gamma_bar = np.cumsum(np.log1p(-etas))
  log_alpha_bar = lambda t: np.log(
      continuous_alphas_cumprod(t, beta_start, beta_end, num_timesteps))
  # alpha_bar(t) decreases in t, so f increases; t = -1 is alpha_bar = 1.
  steps = _bisect(lambda t: log_gamma_bar - log_alpha_bar(t), -1.0, num_timesteps - 1.0)
  return SamplingSchedule(jnp.asarray(np.clip(steps, 0.0, num_timesteps - 1.0), jnp.float32),
                          process.diffusion_coefficients(etas))


# --- Samplers ------------------------------------------------------------------------------------


def _split_output(out):
  return out if isinstance(out, tuple) else (out, None)


def _reverse_scan(step_fn, schedule: SamplingSchedule, x_T: jax.Array, key: jax.Array):
  """Runs step_fn(x, s, t_model, key) for s = S-1 down to 0 as one `lax.scan`."""
  num = schedule.model_t.shape[0]
  indices = jnp.arange(num - 1, -1, -1, dtype=jnp.int32)
  keys = jax.random.split(key, num)

  def body(x, inputs):
    s, step_key = inputs
    t_model = jnp.full(x.shape[:1], schedule.model_t[s], schedule.model_t.dtype)
    return step_fn(x, jnp.full(x.shape[:1], s, jnp.int32), t_model, step_key), None

  x0, _ = jax.lax.scan(body, x_T, (indices, keys))
  return x0


def ancestral_sample(eps_fn: EpsFn, schedule: SamplingSchedule, x_T: jax.Array, key: jax.Array, *,
                     variance: str = 'fixed_small', clip_denoised: bool = True) -> jax.Array:
  """DDPM Algorithm 2 on `schedule` (all steps, or a respaced subsequence), from noise x_T.

  variance: 'fixed_small' (beta_tilde), 'fixed_large' (beta) or 'learned_range' (Improved DDPM
  eq. 15; eps_fn must return (eps, v)). clip_denoised: clip the x_0 estimate to [-1, 1] before
  forming the mean, as DDPM's sampler does.
  """
  coefs = schedule.coefs

  def step(x, s, t_model, step_key):
    eps, model_v = _split_output(eps_fn(x, t_model))
    mean, log_var, _ = process.p_mean_variance(coefs, x, s, eps, model_v, variance=variance,
                                               clip_denoised=clip_denoised)
    noise = jax.random.normal(step_key, x.shape, x.dtype)
    # No noise is added when producing x_0 (s = 0).
    return mean + jnp.where(s[0] > 0, jnp.exp(0.5 * log_var), 0.0) * noise

  return _reverse_scan(step, schedule, x_T, key)


def ddim_sample(eps_fn: EpsFn, schedule: SamplingSchedule, x_T: jax.Array, key: jax.Array, *,
                eta: float = 0.0, clip_denoised: bool = False) -> jax.Array:
  """DDIM eq. 12 on `schedule`, from noise x_T; FastDPM's reverse process with kappa = eta.

  x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z with
  sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) (1 - alpha_bar / alpha_bar_prev))
  (eq. 16), i.e. eta times the posterior standard deviation of the S-step process. The last step
  goes to alpha_bar_prev = 1 and returns x0_hat. A learned-variance output v is ignored.
  clip_denoised clips x0_hat to [-1, 1] and re-derives eps from it (off by default, as in the DDIM
  and FastDPM code).
  """
  coefs = schedule.coefs

  def step(x, s, t_model, step_key):
    eps, _ = _split_output(eps_fn(x, t_model))
    pred_x0 = process.predict_x0_from_eps(coefs, x, s, eps)
    if clip_denoised:
      pred_x0 = jnp.clip(pred_x0, -1.0, 1.0)
      eps = process.predict_eps_from_x0(coefs, x, s, pred_x0)
    alpha_bar_prev = coefs['alphas_cumprod_prev'][s[0]]
    sigma = eta * jnp.sqrt(coefs['posterior_variance'][s[0]])
    direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - sigma ** 2, 0.0))
    noise = jax.random.normal(step_key, x.shape, x.dtype)
    return jnp.sqrt(alpha_bar_prev) * pred_x0 + direction * eps + sigma * noise

  return _reverse_scan(step, schedule, x_T, key)
