"""Forward process, posterior, bound terms, L_hybrid, importance sampling (DDPM, Improved DDPM)."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxpapers.diffusion import process, schedules

BETAS = schedules.linear_betas(1000)
COEFS = process.diffusion_coefficients(BETAS)
# Test data comes from NumPy and whole functions are jitted: one compilation each instead of one
# per primitive and shape keeps this file fast.
_decoder_log_likelihood = jax.jit(process.discretized_gaussian_log_likelihood)
_update_history = jax.jit(process.update_loss_history)


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _uniform(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def test_tables_are_float32_and_posterior_matches_closed_forms():
  posterior = process.posterior_coefficients(BETAS)
  assert set(posterior) <= set(COEFS)
  for table in COEFS.values():
    chex.assert_shape(table, (1000,))
    chex.assert_type(table, jnp.float32)
  # Eqs. 6-7 transcribed step by step, with alpha_bar_0 = 1.
  alpha_bar, prev = 1.0, 1.0
  variance, coef1, coef2 = [], [], []
  for beta in BETAS:
    prev, alpha_bar = alpha_bar, alpha_bar * (1 - beta)
    variance.append((1 - prev) / (1 - alpha_bar) * beta)
    coef1.append(np.sqrt(prev) * beta / (1 - alpha_bar))
    coef2.append(np.sqrt(1 - beta) * (1 - prev) / (1 - alpha_bar))
  np.testing.assert_allclose(posterior['posterior_variance'], variance, rtol=1e-6)
  np.testing.assert_allclose(posterior['posterior_mean_coef1'], coef1, rtol=1e-6)
  np.testing.assert_allclose(posterior['posterior_mean_coef2'], coef2, rtol=1e-6)
  assert variance[0] == 0.0
  np.testing.assert_allclose(posterior['posterior_log_variance_clipped'],
                             np.log([variance[1]] + variance[1:]), rtol=1e-6)


def test_posterior_is_the_gaussian_product():
  # q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0); as a function of
  # x_{t-1} the precisions add and the precision-weighted means add.
  alpha_bar = np.cumprod(1 - BETAS)
  x0, x_t = 0.3, -1.2
  steps = np.array([1, 7, 250, 999])
  alpha_bar_prev = alpha_bar[steps - 1]
  precision = (1 - BETAS[steps]) / BETAS[steps] + 1 / (1 - alpha_bar_prev)
  mean = (np.sqrt(1 - BETAS[steps]) * x_t / BETAS[steps]
          + np.sqrt(alpha_bar_prev) * x0 / (1 - alpha_bar_prev)) / precision
  got_mean, got_var, got_logvar = process.q_posterior_mean_variance(
      COEFS, jnp.full((4, 1), x0), jnp.full((4, 1), x_t), jnp.asarray(steps))
  np.testing.assert_allclose(got_mean[:, 0], mean, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(got_var[:, 0], 1 / precision, rtol=2e-5)
  np.testing.assert_allclose(got_logvar[:, 0], -np.log(precision), rtol=2e-5)
  # At the first step x_{t-1} = x_0 is known exactly: mean x_0, variance 0.
  mean0, var0, _ = process.q_posterior_mean_variance(
      COEFS, jnp.full((1, 1), x0), jnp.full((1, 1), x_t), jnp.zeros((1,), jnp.int32))
  np.testing.assert_allclose(mean0, [[x0]], atol=1e-6)
  assert var0[0, 0] == 0.0


def test_q_sample_moments():
  x0 = jnp.array([0.8, -0.5, 0.0])
  n, steps = 40000, jnp.array([0, 100, 500, 999])
  noise = _normal(0, (len(steps), n, 3))
  samples = jax.jit(jax.vmap(lambda t, e: process.q_sample(
      COEFS, jnp.broadcast_to(x0, e.shape), jnp.full((n,), t), e)))(steps, noise)
  alpha_bar = np.cumprod(1 - BETAS)[np.asarray(steps)][:, None]
  # 40000 draws: the standard error of a mean is <= 0.005, of a variance <= 0.007.
  np.testing.assert_allclose(samples.mean(axis=1), np.sqrt(alpha_bar) * np.asarray(x0), atol=0.02)
  np.testing.assert_allclose(samples.var(axis=1), np.broadcast_to(1 - alpha_bar, (4, 3)),
                             rtol=0.03, atol=1e-6)


def test_eps_x0_round_trip():
  x0, eps = _uniform(1, (6, 4, 4, 3)), _normal(1, (6, 4, 4, 3))
  t = jnp.array([0, 1, 10, 300, 700, 999])

  @jax.jit
  def round_trip(x0, eps):
    x_t = process.q_sample(COEFS, x0, t, eps)
    return (process.predict_x0_from_eps(COEFS, x_t, t, eps),
            process.predict_eps_from_x0(COEFS, x_t, t, x0))

  x0_again, eps_again = round_trip(x0, eps)
  np.testing.assert_allclose(x0_again, x0, atol=2e-4)
  # eps is recovered wherever it is visible in x_t (not at t = 0, where sqrt(1-alpha_bar) = 0.01).
  np.testing.assert_allclose(eps_again[1:], eps[1:], atol=2e-3)


def test_normal_kl():
  assert process.normal_kl(0.3, -1.0, 0.3, -1.0) == 0.0
  np.testing.assert_allclose(process.normal_kl(jnp.zeros(3), jnp.zeros(3), jnp.ones(3),
                                               jnp.zeros(3)), 0.5)
  # KL(N(0, 1) || N(0, e^2)) = 0.5 (-1 + 2 + e^-2).
  np.testing.assert_allclose(process.normal_kl(0.0, 0.0, 0.0, 2.0), 0.5 * (1 + np.exp(-2.0)),
                             rtol=1e-6)


@pytest.mark.parametrize('mean,log_scale', [(0.0, np.log(0.3)), (0.42, np.log(0.01)),
                                            (-0.97, np.log(0.2)), (1.3, np.log(2.0))])
def test_discretized_decoder_is_a_distribution_over_256_levels(mean, log_scale):
  levels = jnp.linspace(-1.0, 1.0, 256)
  log_probs = _decoder_log_likelihood(levels, jnp.full(256, mean), jnp.full(256, log_scale))
  np.testing.assert_allclose(jnp.sum(jnp.exp(log_probs)), 1.0, atol=1e-5)
  # An interior level's mass is the normal CDF over its bin.
  i = 100
  expected = (stats.norm.cdf(levels[i] + 1 / 255, mean, np.exp(log_scale))
              - stats.norm.cdf(levels[i] - 1 / 255, mean, np.exp(log_scale)))
  np.testing.assert_allclose(np.exp(log_probs[i]), expected, rtol=1e-4, atol=1e-30)


def test_discretized_decoder_gradients_are_finite_at_the_edges():
  levels = jnp.array([-1.0, 0.0, 1.0])
  grad = jax.jit(jax.grad(lambda m: process.discretized_gaussian_log_likelihood(
      levels, m, jnp.full(3, -5.0)).sum()))(jnp.array([0.5, 0.0, -0.5]))
  assert np.all(np.isfinite(grad))


def test_prior_term_is_about_1e5_bits_per_dim():
  # DDPM sec. 4: with the linear schedule, L_T is about 1e-5 bits per dimension for data in [-1, 1]
  # (0.5 alpha_bar_T E[x0^2] / ln 2 to first order in alpha_bar_T).
  x0 = _uniform(4, (2, 8, 8, 3))
  bpd = jax.jit(process.prior_bpd)(COEFS, x0)
  alpha_bar_T = np.prod(1 - BETAS)
  np.testing.assert_allclose(bpd, 0.5 * alpha_bar_T * jnp.mean(x0 ** 2, axis=(1, 2, 3)) / np.log(2),
                             rtol=0.02)
  assert np.all(bpd > 3e-6) and np.all(bpd < 3e-5)


def test_bound_terms_vanish_for_the_true_noise():
  # With eps_pred = the true noise, x0_hat = x0 and the reverse mean is the posterior mean, so the
  # KL terms are 0 for the fixed_small variance and only the variance mismatch for fixed_large.
  x0 = jnp.round(_uniform(2, (4, 3, 3, 2)) * 127.5) / 127.5
  eps = _normal(2, x0.shape)
  t = jnp.array([0, 5, 400, 999])

  @jax.jit
  def terms(x0, eps):
    x_t = process.q_sample(COEFS, x0, t, eps)
    return [process.vlb_terms(COEFS, x0, x_t, t, eps, variance=v)
            for v in ('fixed_small', 'fixed_large')]

  small, large = terms(x0, eps)
  np.testing.assert_allclose(small[1:], 0.0, atol=1e-3)
  ratio = COEFS['posterior_variance'][t[1:]] / BETAS[np.asarray(t[1:])]
  np.testing.assert_allclose(large[1:], 0.5 * (-1 - np.log(ratio) + ratio) / np.log(2),
                             rtol=1e-3, atol=1e-6)
  # t = 0 is the decoder's NLL: positive, and small since the decoder's scale is about a bin.
  assert 0 < small[0] < 8


def test_learned_variance_interpolates_between_beta_tilde_and_beta():
  t = jnp.array([3, 500])
  like = jnp.zeros((2, 5))

  @jax.jit
  def log_variances(like):
    learned = lambda o: process.model_log_variance(COEFS, t, like, 'learned_range',
                                                   jnp.full(like.shape, o))
    return (process.model_log_variance(COEFS, t, like, 'fixed_small'),
            process.model_log_variance(COEFS, t, like, 'fixed_large'),
            [learned(o) for o in (-1.0, 0.0, 1.0)])

  small, large, (lowest, middle, highest) = log_variances(like)
  np.testing.assert_allclose(small[:, 0], np.log(COEFS['posterior_variance'][t]), rtol=1e-5)
  np.testing.assert_allclose(large[:, 0], np.log(BETAS[np.asarray(t)]), rtol=1e-5)
  np.testing.assert_allclose(lowest, small, rtol=1e-6)
  np.testing.assert_allclose(highest, large, rtol=1e-6)
  np.testing.assert_allclose(middle, (small + large) / 2, rtol=1e-6)
  with pytest.raises(ValueError):
    process.model_log_variance(COEFS, t, like, 'learned_range')


def test_hybrid_loss_trains_the_mean_only_through_l_simple():
  x0, noise = _uniform(3, (3, 2, 2, 3)), _normal(3, (3, 2, 2, 3))
  eps_pred = noise + 0.1 * _normal(4, x0.shape)
  model_v = 0.2 * _normal(5, x0.shape)
  t = jnp.array([0, 40, 900])
  x_t = process.q_sample(COEFS, x0, t, noise)

  @jax.jit
  def terms_and_grads(eps_pred, model_v):
    terms = lambda e, v: process.hybrid_loss(COEFS, x0, x_t, t, noise, e, v)
    total = lambda key: lambda e, v: terms(e, v)[key].sum()
    return (terms(eps_pred, model_v), jax.grad(total('vb'), (0, 1))(eps_pred, model_v),
            jax.grad(total('loss'))(eps_pred, model_v), jax.grad(total('mse'))(eps_pred, model_v))

  terms, (grad_vb_eps, grad_vb_v), grad_loss, grad_mse = terms_and_grads(eps_pred, model_v)
  np.testing.assert_allclose(terms['loss'], terms['mse'] + 0.001 * 1000 * terms['vb'], rtol=1e-6)
  np.testing.assert_allclose(terms['mse'], jnp.mean((noise - eps_pred) ** 2, axis=(1, 2, 3)),
                             rtol=1e-6)
  assert np.all(grad_vb_eps == 0) and np.any(grad_vb_v != 0)
  np.testing.assert_allclose(grad_loss, grad_mse, rtol=1e-6)


def test_loss_history_appends_and_drops_the_oldest():
  history = process.init_loss_history(4, history_len=2)
  history = _update_history(history, jnp.array([1, 1, 1, 2]), jnp.array([1.0, 2.0, 3.0, 4.0]))
  np.testing.assert_array_equal(history.losses, [[0, 0], [2, 3], [4, 0], [0, 0]])
  np.testing.assert_array_equal(history.counts, [0, 2, 1, 0])


def test_importance_sampling_follows_eq_18():
  probs_of = jax.jit(process.timestep_probs)
  history = process.init_loss_history(4, history_len=2)
  history = _update_history(history, jnp.array([0, 0, 1, 1]), jnp.array([1.0, 1.0, 3.0, 4.0]))
  history = _update_history(history, jnp.array([2, 2, 3, 0]), jnp.array([0.5, 0.5, 2.0, 3.0]))
  # Uniform until every step has a full history.
  np.testing.assert_allclose(probs_of(history), np.full(4, 0.25))
  history = _update_history(history, jnp.array([3, 1, 1, 1]), jnp.array([2.0, 1.0, 3.0, 4.0]))
  # Histories: [1, 3], [3, 4], [0.5, 0.5], [2, 2]; p_t is proportional to their RMS.
  rms = np.sqrt([5.0, 12.5, 0.25, 4.0])
  probs = probs_of(history)
  np.testing.assert_allclose(probs, rms / rms.sum() * (1 - 0.001) + 0.001 / 4, rtol=1e-6)
  t, weights = jax.jit(process.sample_timesteps, static_argnums=2)(jax.random.key(0), probs, 20000)
  chex.assert_type(t, jnp.int32)
  np.testing.assert_allclose(weights, 1 / (4 * probs[t]), rtol=1e-6)
  np.testing.assert_allclose(np.bincount(t, minlength=4) / 20000, probs, atol=0.015)
  # The weighted estimate T * w_t * L_t of L_vlb = sum_t L_t is unbiased (eq. 18).
  per_step_loss = rms * np.array([1.0, 1.2, 0.7, 1.1])
  estimate = np.mean(4 * weights * per_step_loss[t])
  assert estimate == pytest.approx(per_step_loss.sum(), rel=0.03)
