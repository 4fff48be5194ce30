"""Barlow Twins: the loss of identical, whitened embeddings is zero; eq. (1) otherwise."""

import jax.numpy as jnp
import numpy as np

from jaxpapers.selfsup import barlow_twins


def whitened(n, d, seed=0):
  x = np.random.default_rng(seed).normal(size=(n, d))
  x = x - x.mean(0)
  u, _, _ = np.linalg.svd(x, full_matrices=False)
  return (u * np.sqrt(n)).astype(np.float32)  # mean 0, covariance exactly the identity


def test_identical_whitened_embeddings_have_zero_loss():
  z = whitened(64, 8)
  np.testing.assert_allclose(z.T @ z / 64, np.eye(8), atol=1e-5)
  np.testing.assert_allclose(barlow_twins.cross_correlation(z, z), np.eye(8), atol=1e-4)
  assert float(barlow_twins.barlow_twins_loss(z, z)) < 1e-6
  # Identical but correlated embeddings pay the redundancy term; unrelated ones the invariance term.
  correlated = z @ np.triu(np.ones((8, 8), np.float32))
  assert float(barlow_twins.barlow_twins_loss(correlated, correlated)) > 1e-2
  assert float(barlow_twins.barlow_twins_loss(z, whitened(64, 8, seed=1))) > 4.0


def test_loss_equals_eq1():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(32, 5)), rng.normal(size=(32, 5))
  a, b = a - a.mean(0), b - b.mean(0)
  c = (a.T @ b) / np.sqrt(np.outer((a ** 2).sum(0), (b ** 2).sum(0)))  # eq. (2)
  expected = np.sum((1 - np.diag(c)) ** 2) + 5e-3 * (np.sum(c ** 2) - np.sum(np.diag(c) ** 2))
  np.testing.assert_allclose(barlow_twins.barlow_twins_loss(jnp.asarray(a), jnp.asarray(b)),
                             expected, rtol=1e-4)
