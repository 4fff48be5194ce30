"""The Gaussian diffusion process, its posterior, and the training objectives built on them.

Papers and equations:
  * Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239):
    eq. 4 (q(x_t | x_0), `q_sample`), eq. 5 (the variational bound L_T + sum L_{t-1} + L_0,
    `prior_bpd` and `vlb_terms`), eqs. 6-7 (the posterior q(x_{t-1} | x_t, x_0),
    `posterior_coefficients`, `q_posterior_mean_variance`), eq. 11 (the epsilon parameterisation of
    the reverse mean, `predict_x0_from_eps` + posterior mean), eq. 13 (the discretized Gaussian
    decoder for t = 1, `discretized_gaussian_log_likelihood`), eq. 14 (L_simple, `l_simple`), and
    sec. 3.2's two fixed reverse variances sigma_t^2 = beta_t ('fixed_large') and
    sigma_t^2 = beta_tilde_t ('fixed_small').
  * Improved Denoising Diffusion Probabilistic Models (Nichol, Dhariwal 2021, arXiv:2102.09672):
    eq. 15 (learned variance: log sigma^2 = v log beta_t + (1 - v) log beta_tilde_t,
    'learned_range'), eq. 16 with sec. 3.1 (L_hybrid = L_simple + lambda L_vlb, lambda = 0.001,
    stop-gradient on the mean inside L_vlb, `hybrid_loss`), eq. 18 with sec. 3.3 (importance-sampled
    timesteps, p_t proportional to sqrt(E[L_t^2]) over a history of the last 10 values of each L_t,
    uniform until every history is full: `LossHistory`, `update_loss_history`, `timestep_probs`,
    `sample_timesteps`).

Conventions: images are NHWC in [-1, 1]; `t` is a [B] int32 array of 0-based step indices (index i
is the paper's step t = i + 1); every table and function is float32; losses are per example, [B].
All randomness is explicit: functions take the Gaussian noise (or a PRNG key) as an argument.

Departures, and why:
  * Coefficient tables are computed on the host in float64 from concrete betas and stored as float32
    (as the reference implementations do); see `schedules.py`.
  * `discretized_gaussian_log_likelihood` uses the exact normal CDF (`log_ndtr`, with the
    difference of two CDFs taken in log space) where the DDPM/Improved DDPM code uses a tanh
    approximation of the CDF and clamps probabilities at 1e-12; the bins and edge cases are
    eq. 13's.
  * Eq. 15's v is the network output o mapped by v = (o + 1) / 2, as in the official Improved DDPM
    code, so a zero-initialised output layer starts halfway (in log space) between beta_tilde_t and
    beta_t.
  * Bound terms are reported in bits per dimension (mean over dimensions / ln 2) and L_simple is the
    mean over dimensions, matching both official codebases; L_hybrid therefore reads
    L_simple + lambda * T * L_t for a uniformly drawn t (T * L_t estimates L_vlb = sum_t L_t).
  * `timestep_probs` mixes a small uniform component into p_t (`uniform_prob`, 0.001 in the
    official code; the paper does not mention it) so that every 1 / p_t stays bounded.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

Coefficients = dict[str, jax.Array]

VARIANCES = ('fixed_small', 'fixed_large', 'learned_range')


def _float32_tables(tables: dict[str, np.ndarray]) -> Coefficients:
  return {name: jnp.asarray(value, jnp.float32) for name, value in tables.items()}


def _cumulative(betas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or betas.shape[0] < 2:
    raise ValueError(f'betas must be a 1-D schedule of at least 2 steps, got shape {betas.shape}')
  if not np.all((betas > 0) & (betas < 1)):
    raise ValueError('every beta must lie in (0, 1)')
  alphas_cumprod = np.cumprod(1.0 - betas)
  return betas, alphas_cumprod, np.append(1.0, alphas_cumprod[:-1])


def posterior_coefficients(betas) -> Coefficients:
  """Tables of q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta_tilde_t I) (DDPM eqs. 6-7).

  beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t,
  coef1 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t),
  coef2 = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), with alpha_bar_0 = 1.

  beta_tilde is 0 at the first step, so its log is clipped there to the second step's value (only
  used where no noise is added, or inside the learned-variance interpolation).
  """
  betas, alphas_cumprod, alphas_cumprod_prev = _cumulative(betas)
  variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
  return _float32_tables({
      'posterior_variance': variance,
      'posterior_log_variance_clipped': np.log(np.append(variance[1], variance[1:])),
      'posterior_mean_coef1': betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
      'posterior_mean_coef2': ((1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas)
                               / (1.0 - alphas_cumprod)),
  })


def diffusion_coefficients(betas) -> Coefficients:
  """Every table the process, losses and samplers index by step: forward ones + posterior ones."""
  betas, alphas_cumprod, alphas_cumprod_prev = _cumulative(betas)
  forward = _float32_tables({
      'betas': betas,
      'log_betas': np.log(betas),
      'alphas_cumprod': alphas_cumprod,
      'alphas_cumprod_prev': alphas_cumprod_prev,
      'sqrt_alphas_cumprod': np.sqrt(alphas_cumprod),
      'sqrt_one_minus_alphas_cumprod': np.sqrt(1.0 - alphas_cumprod),
      'sqrt_recip_alphas_cumprod': np.sqrt(1.0 / alphas_cumprod),
      'sqrt_recipm1_alphas_cumprod': np.sqrt(1.0 / alphas_cumprod - 1.0),
  })
  return forward | posterior_coefficients(betas)


def num_steps(coefs: Coefficients) -> int:
  return coefs['betas'].shape[0]


def _per_example(values: jax.Array, like: jax.Array) -> jax.Array:
  """[B] values shaped to broadcast against `like` ([B, ...])."""
  return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def _extract(table: jax.Array, t: jax.Array, like: jax.Array) -> jax.Array:
  """table[t] for a [B] batch of steps, shaped to broadcast against `like`."""
  return _per_example(table[t], like)


def _mean_flat(x: jax.Array) -> jax.Array:
  return jnp.mean(x, axis=tuple(range(1, x.ndim)))


# --- The forward process and its posterior -------------------------------------------------------


def q_sample(coefs: Coefficients, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, a draw of q(x_t | x_0) (eq. 4)."""
  return (_extract(coefs['sqrt_alphas_cumprod'], t, x0) * x0
          + _extract(coefs['sqrt_one_minus_alphas_cumprod'], t, x0) * noise)


def q_posterior_mean_variance(coefs: Coefficients, x0: jax.Array, x_t: jax.Array, t: jax.Array):
  """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (eqs. 6-7)."""
  mean = (_extract(coefs['posterior_mean_coef1'], t, x_t) * x0
          + _extract(coefs['posterior_mean_coef2'], t, x_t) * x_t)
  return (mean, _extract(coefs['posterior_variance'], t, x_t),
          _extract(coefs['posterior_log_variance_clipped'], t, x_t))


def predict_x0_from_eps(coefs: Coefficients, x_t: jax.Array, t: jax.Array,
                        eps: jax.Array) -> jax.Array:
  """Inverts eq. 4 for x_0: x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)."""
  return (_extract(coefs['sqrt_recip_alphas_cumprod'], t, x_t) * x_t
          - _extract(coefs['sqrt_recipm1_alphas_cumprod'], t, x_t) * eps)


def predict_eps_from_x0(coefs: Coefficients, x_t: jax.Array, t: jax.Array,
                        x0: jax.Array) -> jax.Array:
  """Inverts eq. 4 for the noise given x_0."""
  return ((_extract(coefs['sqrt_recip_alphas_cumprod'], t, x_t) * x_t - x0)
          / _extract(coefs['sqrt_recipm1_alphas_cumprod'], t, x_t))


# --- The reverse process p(x_{t-1} | x_t) ---------------------------------------------------------


def model_log_variance(coefs: Coefficients, t: jax.Array, like: jax.Array,
                       variance: str = 'fixed_small',
                       model_v: jax.Array | None = None) -> jax.Array:
  """log sigma_t^2 of the reverse step, broadcast against `like`.

  'fixed_small': beta_tilde_t; 'fixed_large': beta_t (DDPM sec. 3.2; at the first step, where the
  reverse step adds no noise, beta_tilde of the second step as in DDPM's code, so the bound term
  stays finite); 'learned_range': Improved DDPM eq. 15 with v = (model_v + 1) / 2.
  """
  log_small = _extract(coefs['posterior_log_variance_clipped'], t, like)
  if variance == 'fixed_small':
    return jnp.broadcast_to(log_small, like.shape)
  log_large = _extract(coefs['log_betas'], t, like)
  if variance == 'fixed_large':
    return jnp.broadcast_to(jnp.where(_per_example(t == 0, like), log_small, log_large),
                            like.shape)
  if variance == 'learned_range':
    if model_v is None:
      raise ValueError("variance='learned_range' needs the model's variance output model_v")
    v = (model_v + 1.0) / 2.0
    return v * log_large + (1.0 - v) * log_small
  raise ValueError(f'unknown variance {variance!r}; expected one of {VARIANCES}')


def p_mean_variance(coefs: Coefficients, x_t: jax.Array, t: jax.Array, eps: jax.Array,
                    model_v: jax.Array | None = None, *, variance: str = 'fixed_small',
                    clip_denoised: bool = False):
  """Mean and log-variance of p(x_{t-1} | x_t) from an epsilon prediction, and the x_0 estimate.

  The mean is eq. 11, computed as the posterior mean at the predicted x_0 (the same quantity);
  `clip_denoised` clips that x_0 estimate to the data range [-1, 1] first, as DDPM's sampler does.
  """
  pred_x0 = predict_x0_from_eps(coefs, x_t, t, eps)
  if clip_denoised:
    pred_x0 = jnp.clip(pred_x0, -1.0, 1.0)
  mean, _, _ = q_posterior_mean_variance(coefs, pred_x0, x_t, t)
  return mean, model_log_variance(coefs, t, x_t, variance, model_v), pred_x0


# --- Likelihood terms ----------------------------------------------------------------------------


def normal_kl(mean1, logvar1, mean2, logvar2) -> jax.Array:
  """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
  return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                + (mean1 - mean2) ** 2 * jnp.exp(-logvar2))


def _log1mexp(d: jax.Array) -> jax.Array:
  """log(1 - e^d) for d <= 0, accurate at both ends (Maechler 2012)."""
  return jnp.where(d > -np.log(2.0), jnp.log(-jnp.expm1(d)), jnp.log1p(-jnp.exp(d)))


def _log_normal_interval(lo: jax.Array, hi: jax.Array) -> jax.Array:
  """log(Phi(hi) - Phi(lo)) for lo < hi; mirrored into the lower tail where it is accurate."""
  mirror = lo > 0
  a = jnp.where(mirror, -hi, lo)
  b = jnp.where(mirror, -lo, hi)
  log_b = log_ndtr(b)
  return log_b + _log1mexp(log_ndtr(a) - log_b)


def discretized_gaussian_log_likelihood(x: jax.Array, means: jax.Array,
                                        log_scales: jax.Array) -> jax.Array:
  """log p(x) per element, in nats, for data on 256 levels in [-1, 1] (DDPM eq. 13).

  Each level owns the interval [x - 1/255, x + 1/255] of a Gaussian N(means, exp(log_scales)^2),
  with the outermost intervals extended to -inf and +inf so the 256 probabilities sum to 1.
  """
  inv_std = jnp.exp(-log_scales)
  hi = (x - means + 1.0 / 255.0) * inv_std
  lo = (x - means - 1.0 / 255.0) * inv_std
  # The lowest level owns (-inf, hi], the highest [lo, inf); all three are computed on finite
  # arguments so that neither branch produces NaN gradients.
  return jnp.where(x < -0.999, log_ndtr(hi),
                   jnp.where(x > 0.999, log_ndtr(-lo), _log_normal_interval(lo, hi)))


def prior_bpd(coefs: Coefficients, x0: jax.Array) -> jax.Array:
  """L_T of eq. 5: KL(q(x_T | x_0) || N(0, I)) in bits per dimension, [B]. Has no parameters."""
  t = jnp.full(x0.shape[:1], num_steps(coefs) - 1, jnp.int32)
  mean = _extract(coefs['sqrt_alphas_cumprod'], t, x0) * x0
  logvar = jnp.log(_extract(1.0 - coefs['alphas_cumprod'], t, x0))
  return _mean_flat(normal_kl(mean, logvar, 0.0, 0.0)) / np.log(2.0)


def vlb_terms(coefs: Coefficients, x0: jax.Array, x_t: jax.Array, t: jax.Array, eps: jax.Array,
              model_v: jax.Array | None = None, *, variance: str = 'fixed_small') -> jax.Array:
  """The bound term L_t at each example's step, in bits per dimension, [B] (eq. 5).

  KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for steps after the first; the decoder's negative
  log-likelihood -log p(x_0 | x_1) (eq. 13) at the first step (index 0).
  """
  true_mean, _, true_logvar = q_posterior_mean_variance(coefs, x0, x_t, t)
  mean, logvar, _ = p_mean_variance(coefs, x_t, t, eps, model_v, variance=variance)
  kl = _mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / np.log(2.0)
  decoder_nll = -_mean_flat(
      discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar)) / np.log(2.0)
  return jnp.where(t == 0, decoder_nll, kl)


# --- Training objectives -------------------------------------------------------------------------


def l_simple(eps: jax.Array, eps_pred: jax.Array) -> jax.Array:
  """L_simple (eq. 14): ||eps - eps_theta(x_t, t)||^2, averaged over dimensions, [B]."""
  return _mean_flat((eps - eps_pred) ** 2)


def hybrid_loss(coefs: Coefficients, x0: jax.Array, x_t: jax.Array, t: jax.Array,
                noise: jax.Array, eps_pred: jax.Array, model_v: jax.Array,
                lam: float = 0.001) -> dict[str, jax.Array]:
  """Improved DDPM's L_hybrid = L_simple + lambda L_vlb (eq. 16, sec. 3.1), per example.

  Args:
    coefs: `diffusion_coefficients` of the training schedule.
    x0: clean data [B, ...]; x_t: `q_sample(coefs, x0, t, noise)`, the network's input.
    t: [B] int32 steps; noise: the epsilon used to make x_t (L_simple's target).
    eps_pred, model_v: the two halves of the network's output.
    lam: lambda; 0.001 in the paper.

  Returns:
    {'mse': L_simple, 'vb': L_t in bits/dim with the mean frozen, 'loss': mse + lam * T * vb}, each
    [B]. The stop-gradient on eps_pred inside 'vb' makes L_vlb train only the variance, as sec. 3.1
    prescribes. With importance-sampled steps, multiply 'loss' by `sample_timesteps`'s weights.
  """
  mse = l_simple(noise, eps_pred)
  vb = vlb_terms(coefs, x0, x_t, t, jax.lax.stop_gradient(eps_pred), model_v,
                 variance='learned_range')
  return {'mse': mse, 'vb': vb, 'loss': mse + lam * num_steps(coefs) * vb}


# --- Importance-sampled timesteps (Improved DDPM sec. 3.3) ---------------------------------------


class LossHistory(NamedTuple):
  """The last `history_len` values of each L_t; the state of the importance sampler."""
  losses: jax.Array  # [T, history_len] float32, oldest first.
  counts: jax.Array  # [T] int32, how many of each row are filled (saturates at history_len).


def init_loss_history(num_timesteps: int, history_len: int = 10) -> LossHistory:
  return LossHistory(jnp.zeros((num_timesteps, history_len), jnp.float32),
                     jnp.zeros((num_timesteps,), jnp.int32))


def update_loss_history(history: LossHistory, t: jax.Array, losses: jax.Array) -> LossHistory:
  """Appends each (t_i, loss_i) in order, dropping the oldest value of a full row.

  In data-parallel training, gather t and losses from every replica first so all replicas keep the
  same history (as the official code does).
  """
  size = history.losses.shape[1]

  def append(state, step_and_loss):
    losses, counts = state
    step, loss = step_and_loss
    row, count = losses[step], counts[step]
    shifted = jnp.roll(row, -1).at[-1].set(loss)
    filled = row.at[jnp.minimum(count, size - 1)].set(loss)
    row = jnp.where(count == size, shifted, filled)
    return (losses.at[step].set(row), counts.at[step].set(jnp.minimum(count + 1, size))), None

  (losses, counts), _ = jax.lax.scan(
      append, tuple(history),
      (t.astype(jnp.int32), jax.lax.stop_gradient(losses).astype(jnp.float32)))
  return LossHistory(losses, counts)


def timestep_probs(history: LossHistory, uniform_prob: float = 0.001) -> jax.Array:
  """p_t proportional to sqrt(E[L_t^2]) (eq. 18); uniform until every row of the history is full."""
  num_timesteps = history.losses.shape[0]
  weights = jnp.sqrt(jnp.mean(history.losses ** 2, axis=-1))
  probs = weights / jnp.sum(weights) * (1.0 - uniform_prob) + uniform_prob / num_timesteps
  warmed_up = jnp.all(history.counts == history.losses.shape[1])
  return jnp.where(warmed_up, probs, jnp.full_like(probs, 1.0 / num_timesteps))


def sample_timesteps(key: jax.Array, probs: jax.Array, batch_size: int):
  """Draws [B] int32 steps t ~ p_t and the weights 1 / (T p_t) that keep the objective unbiased.

  E_{t~p}[weight_t * T * L_t] = sum_t L_t = L_vlb (minus its constant L_T), the estimator of eq. 18;
  uniform probs give weights of exactly 1.
  """
  num_timesteps = probs.shape[0]
  t = jax.random.choice(key, num_timesteps, (batch_size,), p=probs).astype(jnp.int32)
  return t, 1.0 / (num_timesteps * probs[t])
