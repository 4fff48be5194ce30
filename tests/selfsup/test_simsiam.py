"""SimSiam: D is the negative cosine, and no gradient passes through the target branch (eq. 4)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.selfsup import simsiam


def test_loss_is_the_symmetrised_negative_cosine():
  rng = np.random.default_rng(0)
  p1, p2, z1, z2 = (jnp.asarray(rng.normal(size=(6, 3)), jnp.float32) for _ in range(4))
  cos = lambda a, b: jnp.sum(a * b, 1) / (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1))
  expected = -0.5 * jnp.mean(cos(p1, z2)) - 0.5 * jnp.mean(cos(p2, z1))
  np.testing.assert_allclose(simsiam.simsiam_loss(p1, p2, z1, z2), expected, rtol=1e-5)
  np.testing.assert_allclose(simsiam.simsiam_loss(z2, z1, z1, z2), -1.0, rtol=1e-6)  # its minimum


def test_no_gradient_passes_through_the_target_branch():
  """Through a real encoder and predictor, the gradient equals that of the same loss with the
  targets z computed beforehand as constants; without the stop-gradient it would differ."""
  encoder, predictor = nn.Dense(4), nn.Dense(4)
  x1, x2 = jax.random.normal(jax.random.key(0), (2, 8, 3))
  params = {'f': encoder.init(jax.random.key(1), x1), 'h': predictor.init(jax.random.key(2),
                                                                          jnp.zeros((1, 4)))}

  def loss(params, targets=None, stop=True):
    z1, z2 = encoder.apply(params['f'], x1), encoder.apply(params['f'], x2)
    p1, p2 = predictor.apply(params['h'], z1), predictor.apply(params['h'], z2)
    if targets is not None:
      z1, z2 = targets
    if not stop:  # the ablation of section 4.2: D(p, z) without stopgrad
      cos = lambda p, z: jnp.mean(jnp.sum(p * z, 1) / (jnp.linalg.norm(p, axis=1)
                                                        * jnp.linalg.norm(z, axis=1)))
      return -0.5 * cos(p1, z2) - 0.5 * cos(p2, z1)
    return simsiam.simsiam_loss(p1, p2, z1, z2)

  constants = (encoder.apply(params['f'], x1), encoder.apply(params['f'], x2))
  grads = jax.grad(loss)(params)
  np.testing.assert_allclose(loss(params), loss(params, constants), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads,
               jax.grad(loss)(params, constants))
  without = jax.grad(lambda p: loss(p, stop=False))(params)
  assert not np.allclose(without['f']['params']['kernel'], grads['f']['params']['kernel'],
                         atol=1e-4)
  # The targets themselves, as inputs, receive exactly zero gradient.
  zero = jax.grad(lambda z: simsiam.simsiam_loss(*constants[::-1], *z))(constants)
  np.testing.assert_array_equal(zero[0], 0.0)
  np.testing.assert_array_equal(zero[1], 0.0)
