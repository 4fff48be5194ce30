"""Ancestral, respaced, DDIM and FastDPM samplers on one T = 1000 model, with oracle eps models."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.diffusion import samplers, schedules

T = 1000
BETAS = schedules.linear_betas(T)
ALPHA_BAR = np.cumprod(1 - BETAS)
FULL = samplers.respaced_schedule(BETAS)
X0 = jnp.array([0.7, -0.3, 0.05])  # the single data point of the point-mass oracle
X_T = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)


def point_mass_eps(x, t):
  """The exact eps of data = X0 at (possibly real) steps t: (x_t - sqrt(a) X0) / sqrt(1 - a)."""
  log_alpha_bar = jnp.interp(t.astype(jnp.float32), jnp.arange(T, dtype=jnp.float32),
                             jnp.asarray(np.log(ALPHA_BAR), jnp.float32))
  alpha_bar = jnp.exp(log_alpha_bar)[:, None]
  return (x - jnp.sqrt(alpha_bar) * X0) / jnp.sqrt(1 - alpha_bar)


MU, S = 0.2, 0.5  # Gaussian data N(MU, S^2) per dimension


def gaussian_eps(x, t):
  """The exact E[eps | x_t] for N(MU, S^2) data: sqrt(1 - a) (x - sqrt(a) MU) / (a S^2 + 1 - a)."""
  a = jnp.asarray(ALPHA_BAR, jnp.float32)[t][:, None]
  return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * MU) / (a * S ** 2 + 1 - a)


def _sampler(sampler, eps_fn, **static):
  return jax.jit(functools.partial(sampler, eps_fn, **static))


def test_sampler_is_one_compiled_program():
  traces = []

  def eps_fn(x, t):
    traces.append(t.dtype)
    return jnp.zeros_like(x)

  for sampler in (samplers.ancestral_sample, samplers.ddim_sample):
    traces.clear()
    run = _sampler(sampler, eps_fn)
    x_T = jnp.ones((2, 4, 4, 3))
    assert 'while' in run.lower(FULL, x_T, jax.random.key(0)).as_text()
    for seed in range(2):
      out = run(FULL, x_T + seed, jax.random.key(seed))
    chex.assert_shape(out, (2, 4, 4, 3))
    chex.assert_type(out, jnp.float32)
    # One trace of the model for all 1000 steps and both calls; it sees int32 steps.
    assert traces == [jnp.int32]


def test_respacing_keeps_the_noise_levels():
  np.testing.assert_allclose(samplers.respace_betas(BETAS, np.arange(T)), BETAS, rtol=1e-10)
  kept = samplers.evenly_spaced_timesteps(T, 50)
  assert len(kept) == 50 and kept[0] == 0 and kept[-1] == T - 1
  assert set(np.diff(kept)) <= {20, 21}
  respaced = samplers.respaced_schedule(BETAS, kept)
  np.testing.assert_allclose(respaced.coefs['alphas_cumprod'], ALPHA_BAR[kept], rtol=1e-6)
  np.testing.assert_array_equal(respaced.model_t, kept)
  with pytest.raises(ValueError):
    samplers.respace_betas(BETAS, [5, 3])


def test_step_timesteps_follow_ddim_and_fastdpm():
  np.testing.assert_array_equal(samplers.step_timesteps(T, 10, 'linear'), np.arange(10) * 111)
  quadratic = samplers.step_timesteps(T, 10, 'quadratic')
  np.testing.assert_array_equal(quadratic, [int(i * i * 800 / 81) for i in range(10)])
  assert quadratic[-1] == 800 and np.all(np.diff(quadratic, 2) > 0)
  # FastDPM's CIFAR-10 setting: floor(i^2 800 / 49^2) gives step 0 twice; it is kept once.
  quadratic = samplers.step_timesteps(T, 50, 'quadratic')
  assert len(quadratic) == 49 and quadratic[0] == 0 and quadratic[-1] == 800
  assert np.all(np.diff(quadratic) > 0)


@pytest.mark.parametrize('sampler,schedule,static', [
    (samplers.ancestral_sample, FULL, {'variance': 'fixed_small'}),
    (samplers.ancestral_sample, FULL, {'variance': 'fixed_large'}),
    (samplers.ancestral_sample, samplers.respaced_schedule(
        BETAS, samplers.evenly_spaced_timesteps(T, 25)), {'variance': 'fixed_small'}),
    (samplers.ddim_sample, samplers.respaced_schedule(
        BETAS, samplers.step_timesteps(T, 10, 'quadratic')), {'eta': 0.0}),
    (samplers.ddim_sample, samplers.respaced_schedule(
        BETAS, samplers.step_timesteps(T, 10, 'linear')), {'eta': 0.5}),
], ids=['ancestral-small', 'ancestral-large', 'respaced-25', 'ddim-quadratic-10',
        'ddim-eta0.5-linear-10'])
def test_samplers_recover_a_point_mass(sampler, schedule, static):
  out = _sampler(sampler, point_mass_eps, **static)(schedule, X_T, jax.random.key(1))
  np.testing.assert_allclose(out, jnp.broadcast_to(X0, out.shape), atol=1e-4)


def test_learned_variance_endpoints_are_the_fixed_variances():
  schedule = samplers.respaced_schedule(BETAS, samplers.evenly_spaced_timesteps(T, 25))
  learned = jax.jit(lambda v, key: samplers.ancestral_sample(
      lambda x, t: (gaussian_eps(x, t), jnp.full_like(x, v)), schedule, X_T, key,
      variance='learned_range'))
  key = jax.random.key(2)
  for v, fixed in ((-1.0, 'fixed_small'), (1.0, 'fixed_large')):
    expected = _sampler(samplers.ancestral_sample, gaussian_eps, variance=fixed)(schedule, X_T, key)
    np.testing.assert_allclose(learned(v, key), expected, atol=1e-5)


DDIM = jax.jit(lambda schedule, x_T, key, eta: samplers.ddim_sample(
    gaussian_eps, schedule, x_T, key, eta=eta))


def test_ddim_eta0_is_deterministic_and_eta1_is_ddpm():
  first, second = (DDIM(FULL, X_T, jax.random.key(k), 0.0) for k in (3, 4))
  np.testing.assert_array_equal(first, second)
  assert not np.allclose(DDIM(FULL, X_T, jax.random.key(3), 1.0),
                         DDIM(FULL, X_T, jax.random.key(4), 1.0))
  # DDIM eq. 16 with eta = 1 is the DDPM posterior: the same draws give the same samples.
  ancestral = _sampler(samplers.ancestral_sample, gaussian_eps, clip_denoised=False)
  np.testing.assert_allclose(DDIM(FULL, X_T, jax.random.key(5), 1.0),
                             ancestral(FULL, X_T, jax.random.key(5)), atol=2e-4)


def test_ddim_eta0_with_all_steps_solves_the_probability_flow_ode():
  # For N(MU, S^2) data, DDIM eq. 14 dx_bar/dsigma = sigma (x_bar - MU) / (S^2 + sigma^2) has the
  # solution x_bar - MU proportional to sqrt(S^2 + sigma^2); x_0 = x_bar at sigma = 0.
  sigma_T = np.sqrt((1 - ALPHA_BAR[-1]) / ALPHA_BAR[-1])
  exact = MU + (X_T / np.sqrt(ALPHA_BAR[-1]) - MU) * S / np.sqrt(S ** 2 + sigma_T ** 2)
  error = lambda schedule: np.max(np.abs(DDIM(schedule, X_T, jax.random.key(6), 0.0) - exact))
  # DDIM is Euler's method in sigma: 1000 steps leave a 3e-3 discretisation error (the same in
  # float64), 10 steps a hundred times more.
  assert error(FULL) < 5e-3
  assert error(samplers.respaced_schedule(BETAS, samplers.step_timesteps(T, 10))) > 0.1


def test_fastdpm_continuous_steps_extend_alpha_bar():
  # The Gamma-function form is exact at integer steps...
  np.testing.assert_allclose(samplers.continuous_alphas_cumprod(np.arange(T), 1e-4, 0.02, T),
                             ALPHA_BAR, rtol=1e-9)
  # ...and decreasing in between.
  fine = samplers.continuous_alphas_cumprod(np.linspace(0, 3, 31), 1e-4, 0.02, T)
  assert np.all(np.diff(fine) < 0) and fine[10] == pytest.approx(ALPHA_BAR[1], rel=1e-9)


@pytest.mark.parametrize('spacing', ['linear', 'quadratic'])
def test_fastdpm_var_schedule(spacing):
  etas = samplers.var_betas(20, spacing=spacing)
  # The short process starts at beta_1 and ends at the trained process's noise level alpha_bar_T.
  assert etas[0] == pytest.approx(1e-4) and np.all(np.diff(etas) > 0)
  np.testing.assert_allclose(np.prod(1 - etas), ALPHA_BAR[-1], rtol=1e-6)
  schedule = samplers.var_schedule(etas)
  chex.assert_type(schedule.model_t, jnp.float32)
  steps = np.asarray(schedule.model_t, np.float64)
  assert steps[0] == pytest.approx(0, abs=1e-3) and steps[-1] == pytest.approx(T - 1, abs=1e-2)
  assert np.all(np.diff(steps) > 0)
  # The bijection: the trained model's noise level at each real step is the VAR noise level.
  np.testing.assert_allclose(samplers.continuous_alphas_cumprod(steps, 1e-4, 0.02, T),
                             np.cumprod(1 - etas), rtol=1e-4)


def test_fastdpm_var_recovers_a_point_mass_only_at_the_mapped_steps():
  schedule = samplers.var_schedule(samplers.var_betas(10, spacing='quadratic'))
  run = jax.jit(lambda schedule: samplers.ddim_sample(point_mass_eps, schedule, X_T,
                                                      jax.random.key(7), eta=0.0))
  np.testing.assert_allclose(run(schedule), jnp.broadcast_to(X0, X_T.shape), atol=1e-4)
  # Evaluating the model one step off (the 1-based step instead of the 0-based index) misses X0.
  shifted = schedule._replace(model_t=schedule.model_t + 1)
  assert np.max(np.abs(run(shifted) - X0)) > 1e-3
