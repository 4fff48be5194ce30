"""BYOL: the tau schedule of section 3.2, and the symmetrised normalised-MSE loss of eq. (2)-(3)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.selfsup import byol


def test_tau_follows_the_cosine_schedule_from_0_996_to_1():
  total = 300
  tau = jax.jit(byol.target_decay(total))
  for k in range(0, total + 1, 7):
    paper = 1 - (1 - 0.996) * (math.cos(math.pi * k / total) + 1) / 2
    np.testing.assert_allclose(tau(k), paper, rtol=0, atol=1e-7)
  np.testing.assert_allclose([tau(0), tau(total), tau(2 * total)], [0.996, 1.0, 1.0], atol=1e-7)
  assert byol.TAU_BASE == 0.996


def test_loss_is_two_minus_two_cosine_symmetrised_with_no_gradient_to_the_target():
  rng = np.random.default_rng(0)
  p1, p2, z1, z2 = (jnp.asarray(rng.normal(size=(5, 4)), jnp.float32) for _ in range(4))
  unit = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)
  mse = lambda p, z: jnp.mean(jnp.sum((unit(p) - unit(z)) ** 2, axis=1))  # |p_bar - z_bar|^2
  np.testing.assert_allclose(byol.byol_loss(p1, p2, z1, z2), mse(p1, z2) + mse(p2, z1), rtol=1e-5)
  np.testing.assert_allclose(byol.byol_loss(z2, z1, z1, z2), 0.0, atol=1e-6)
  grads = jax.grad(byol.byol_loss, argnums=(0, 1, 2, 3))(p1, p2, z1, z2)
  assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[1]).sum()) > 0
  np.testing.assert_array_equal(grads[2], 0.0)
  np.testing.assert_array_equal(grads[3], 0.0)
