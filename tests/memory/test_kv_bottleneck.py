"""Discrete key-value bottleneck (Trauble et al. 2022): nearest-key lookup, local value updates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.memory import kv_bottleneck as kvb

MODEL = kvb.KeyValueBottleneck(num_heads=3, num_keys=16, key_dim=2, value_dim=4, input_dim=2)
X = np.random.default_rng(0).uniform(-1, 1, (200, 2)).astype(np.float32)


def _variables():
  variables = jax.jit(MODEL.init)(jax.random.key(0), X[:2])
  return kvb.init_keys(MODEL, variables, X)


def test_output_is_the_mean_of_each_heads_nearest_keys_value():
  variables = _variables()
  rng = np.random.default_rng(1)
  values = rng.standard_normal((3, 16, 4)).astype(np.float32)
  variables = {**variables, 'params': {'values': jnp.asarray(values)}}
  out = np.asarray(jax.jit(MODEL.apply)(variables, X[:10]))
  proj, keys = (np.asarray(variables['codebook'][k]) for k in ('projections', 'keys'))
  z = np.einsum('bd,cdk->bck', X[:10], proj)
  nearest = np.argmin(((z[:, :, None] - keys[None]) ** 2).sum(-1), -1)
  want = np.mean([values[c, nearest[:, c]] for c in range(3)], axis=0)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
  # k-means keys: every key is used by some of the data it was fitted on.
  used = np.asarray(jax.jit(lambda v, x: MODEL.apply(v, x, method=kvb.KeyValueBottleneck.lookup))(
      variables, X))
  assert all(len(np.unique(used[:, c])) == 16 for c in range(3))


def test_gradients_reach_only_the_selected_values_and_never_the_keys():
  variables = _variables()
  assert set(variables['params']) == {'values'}  # Keys and projections are not parameters.

  def loss(params, x):
    logits = MODEL.apply({**variables, 'params': params}, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[:, 0])

  x = X[:3]
  grads = np.asarray(jax.grad(loss)(variables['params'], x)['values'])
  index = np.asarray(MODEL.apply(variables, x, method=kvb.KeyValueBottleneck.lookup))
  touched = np.zeros((3, 16), bool)
  for c in range(3):
    touched[c, index[:, c]] = True
  np.testing.assert_array_equal(np.abs(grads).sum(-1) > 0, touched)
  chex.assert_shape(grads, (3, 16, 4))
