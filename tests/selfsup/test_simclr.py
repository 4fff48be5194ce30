"""NT-Xent (SimCLR eq. 1): equals the formula written out, and the same on 1 and 8 devices."""

import math

import chex
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxpapers.selfsup import simclr

RNG = np.random.default_rng(0)
Z1 = RNG.normal(size=(32, 6)).astype(np.float32)
Z2 = (Z1 + 0.5 * RNG.normal(size=(32, 6))).astype(np.float32)


def eq1_loss(z1, z2, tau):
  """Eq. (1) by loops: views 2k and 2k+1 of Algorithm 1 are z1[k], z2[k]; mean of l over 2N pairs."""
  z = []
  for a, b in zip(z1, z2):
    z += [a, b]
  sim = lambda u, v: float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
  def pair_loss(i, j):
    denominator = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(len(z)) if k != i)
    return -math.log(math.exp(sim(z[i], z[j]) / tau) / denominator)
  n = len(z1)
  return sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


def test_nt_xent_equals_eq1():
  for tau in (0.1, 0.5):
    np.testing.assert_allclose(simclr.nt_xent_loss(Z1, Z2, tau), eq1_loss(Z1, Z2, tau), rtol=1e-5)
  # Swapping the views or scaling the embeddings leaves it unchanged (cosine similarity).
  np.testing.assert_allclose(simclr.nt_xent_loss(Z2, 3.0 * Z1, 0.5), eq1_loss(Z1, Z2, 0.5),
                             rtol=1e-5)
  # Perfectly aligned views score lower than noisy ones.
  assert simclr.nt_xent_loss(Z1, Z1, 0.5) < simclr.nt_xent_loss(Z1, Z2, 0.5)


def test_global_batch_loss_on_eight_devices_equals_one_device():
  assert jax.device_count() == 8
  loss_and_grad = jax.jit(jax.value_and_grad(lambda a, b: simclr.nt_xent_loss(a, b, 0.5),
                                             argnums=(0, 1)))
  single = loss_and_grad(Z1, Z2)
  results = {'single': single}
  for count in (1, 8):
    mesh = Mesh(np.asarray(jax.devices()[:count]), ('data',))
    rows = NamedSharding(mesh, P('data'))
    z1, z2 = jax.device_put(Z1, rows), jax.device_put(Z2, rows)
    results[f'shard_map_{count}'] = jax.jit(jax.value_and_grad(
        simclr.sharded_nt_xent_loss(mesh, 0.5), argnums=(0, 1)))(z1, z2)
    results[f'jit_{count}'] = loss_and_grad(z1, z2)
  expected = eq1_loss(Z1, Z2, 0.5)
  for value, grads in results.values():
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    chex.assert_trees_all_close(grads, single[1], rtol=1e-4, atol=1e-6)
  # Each device's 4 examples alone (no gather) have fewer negatives: a smaller loss.
  local = np.mean([eq1_loss(Z1[i:i + 4], Z2[i:i + 4], 0.5) for i in range(0, 32, 4)])
  assert local < expected - 0.5
