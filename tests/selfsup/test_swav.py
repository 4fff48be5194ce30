"""SwAV: Sinkhorn-Knopp's rows and columns sum as section 3.1 states; the swapped prediction."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.selfsup import swav

# Cosine-like scores in [-1, 1], most samples nearer prototype 0: the plain softmax is unbalanced.
SCORES = jnp.asarray(np.tanh(np.random.default_rng(0).normal(size=(64, 10)) + np.eye(10)[0]),
                     jnp.float32)


def test_sinkhorn_plan_splits_the_batch_equally_among_prototypes():
  batch, k = SCORES.shape
  plan = swav.transport_plan(SCORES, epsilon=0.05, iterations=3)
  # Every iteration ends on the sample constraint: each sample carries exactly 1/B of the mass...
  np.testing.assert_allclose(plan.sum(axis=1), 1.0 / batch, rtol=1e-5)
  # ...and each prototype's share moves to 1/K with the iterations, exactly in the limit.
  def imbalance(iterations):  # the largest relative gap of a prototype's mass from 1/K
    return float(np.abs(swav.transport_plan(SCORES, 0.05, iterations).sum(axis=0) * k - 1).max())
  gaps = [imbalance(i) for i in (0, 1, 3, 10)]
  assert gaps[0] > 2.0 and gaps[2] < gaps[0] / 4 and gaps[3] < 0.05
  assert all(a > b for a, b in zip(gaps, gaps[1:]))
  converged = swav.transport_plan(SCORES, epsilon=0.05, iterations=500)
  np.testing.assert_allclose(converged.sum(axis=0), 1.0 / k, rtol=1e-4)
  np.testing.assert_allclose(converged.sum(axis=1), 1.0 / batch, rtol=1e-5)
  codes = swav.sinkhorn_knopp(SCORES)
  np.testing.assert_allclose(codes.sum(axis=1), 1.0, rtol=1e-5)  # each code is a distribution
  assert bool(jnp.all(codes >= 0))
  np.testing.assert_array_equal(jax.grad(lambda s: swav.sinkhorn_knopp(s).sum())(SCORES), 0.0)


def test_swapped_prediction_loss():
  rng = np.random.default_rng(1)
  crops = [jnp.asarray(rng.normal(size=(8, 5)), jnp.float32) for _ in range(4)]
  loss, codes = swav.swav_loss(crops, temperature=0.1)
  q = [swav.sinkhorn_knopp(c) for c in crops[:2]]
  ce = lambda s, q: -np.mean(np.sum(q * jax.nn.log_softmax(s / 0.1), axis=1))
  expected = ((ce(crops[1], q[0]) + ce(crops[2], q[0]) + ce(crops[3], q[0])) / 3
              + (ce(crops[0], q[1]) + ce(crops[2], q[1]) + ce(crops[3], q[1])) / 3) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(codes, q[0], rtol=1e-6)
  prototypes = swav.normalize_prototypes(jnp.asarray(rng.normal(size=(5, 7))))
  np.testing.assert_allclose(jnp.linalg.norm(prototypes, axis=0), 1.0, rtol=1e-6)
