"""BN-LSTM (Cooijmans et al. 2016): per-step batch statistics in training, population ones in eval."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.recurrent import bn_lstm

B, T, F, R, T_MAX = 6, 4, 3, 5, 6
XS = np.random.default_rng(0).standard_normal((B, T, F)).astype(np.float32)


def _variables(use_running_average=False):
  rnn = bn_lstm.scan_bn_lstm(bn_lstm.BNLSTMCell(R, max_steps=T_MAX,
                                                use_running_average=use_running_average))
  variables = jax.jit(rnn.init)(jax.random.key(0), XS)
  rng = np.random.default_rng(1)
  # Random scales and biases, so a wrong statistic or a missing gamma cannot hide behind 0.1 / 0.
  params = jax.tree.map(lambda p: np.asarray(p) + 0.5 * rng.standard_normal(p.shape).astype(
      np.float32), variables['params'])
  return rnn, params, variables['batch_stats']


def _reference(params, xs, stats=None, eps=1e-5):
  """Eqs. (6)-(8) unrolled in NumPy; batch statistics per step, or rows of `stats` if given."""
  p = jax.tree.map(np.asarray, params['cell'])

  def bn(name, z, t):
    if stats is None:
      mean, var = z.mean(0), z.var(0)
    else:
      mean, var = (np.asarray(stats['cell'][name][k])[min(t, T_MAX - 1)] for k in ('mean', 'var'))
    y = (z - mean) / np.sqrt(var + eps) * p[name]['scale']
    return y + p[name].get('bias', 0.0)

  sig = lambda z: 1 / (1 + np.exp(-z))
  c = h = np.zeros((xs.shape[0], R), np.float32)
  outputs = []
  for t in range(xs.shape[1]):
    gates = (bn('recurrent_bn', h @ p['recurrent']['kernel'], t)
             + bn('input_bn', xs[:, t] @ p['input']['kernel'], t) + p['bias'])
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(bn('cell_bn', c, t))
    outputs.append(h)
  return np.stack(outputs, 1)


def test_gammas_start_at_a_tenth_and_statistics_are_per_step_tables():
  _, _, stats = _variables()
  params = jax.jit(bn_lstm.scan_bn_lstm(bn_lstm.BNLSTMCell(R, max_steps=T_MAX)).init)(
      jax.random.key(0), XS)['params']['cell']
  for name in ('input_bn', 'recurrent_bn', 'cell_bn'):
    chex.assert_trees_all_equal(params[name]['scale'], jnp.full(params[name]['scale'].shape, 0.1))
    chex.assert_shape([stats['cell'][name]['mean'], stats['cell'][name]['var']],
                      (T_MAX, params[name]['scale'].shape[0]))
  # beta_x and beta_h are dropped (redundant with b); the cell's BN keeps its beta.
  assert 'bias' not in params['input_bn'] and 'bias' not in params['recurrent_bn']
  assert 'bias' in params['cell_bn']


def test_training_normalises_each_step_by_its_own_batch_statistics():
  rnn, params, stats = _variables()
  hs, updated = jax.jit(lambda v: rnn.apply(v, XS, mutable=['batch_stats']))(
      {'params': params, 'batch_stats': stats})
  chex.assert_trees_all_close(hs, _reference(params, XS), atol=1e-5)
  # The same examples in another batch give other outputs: the statistics are the batch's.
  hs_half = jax.jit(lambda v: rnn.apply(v, XS[:3], mutable=['batch_stats']))(
      {'params': params, 'batch_stats': stats})[0]
  assert np.abs(np.asarray(hs_half) - np.asarray(hs[:3])).max() > 1e-3
  # Row t of every running average moved toward step t's batch statistics; rows >= T did not.
  p = jax.tree.map(np.asarray, params['cell'])
  first_input = XS[:, 0] @ p['input']['kernel']
  new = updated['batch_stats']['cell']['input_bn']
  np.testing.assert_allclose(new['mean'][0], 0.01 * first_input.mean(0), atol=1e-6)
  np.testing.assert_allclose(new['var'][0], 0.99 + 0.01 * first_input.var(0), rtol=1e-5)
  second_input = XS[:, 1] @ p['input']['kernel']
  np.testing.assert_allclose(new['mean'][1], 0.01 * second_input.mean(0), atol=1e-6)
  for name in ('input_bn', 'recurrent_bn', 'cell_bn'):
    table = updated['batch_stats']['cell'][name]
    chex.assert_trees_all_equal(table['mean'][T:], jnp.zeros_like(table['mean'][T:]))
    chex.assert_trees_all_equal(table['var'][T:], jnp.ones_like(table['var'][T:]))
    assert np.all(np.abs(np.asarray(table['mean'][1:T])).max(axis=1) > 0)  # Steps 1..T-1 moved.


def test_evaluation_uses_population_statistics_of_each_step():
  rnn, params, stats = _variables(use_running_average=True)
  rng = np.random.default_rng(2)
  stats = jax.tree.map(lambda s: (np.abs(rng.standard_normal(s.shape)) + 0.5).astype(np.float32)
                       if s.ndim else s, stats)
  stats = {'cell': {k: {'mean': v['mean'] - 1.0, 'var': v['var']} for k, v in stats['cell'].items()}}
  # Longer than T_MAX: the last steps reuse the last row of statistics, as in the paper.
  xs = np.concatenate([XS, XS], axis=1)
  hs = jax.jit(rnn.apply)({'params': params, 'batch_stats': stats}, xs)
  chex.assert_trees_all_close(hs, _reference(params, xs, stats), atol=1e-5)
  # Each example's output no longer depends on the rest of the batch.
  alone = jax.jit(rnn.apply)({'params': params, 'batch_stats': stats}, xs[:1])
  chex.assert_trees_all_close(alone, hs[:1], atol=1e-6)


def test_pixel_classifier_trains_through_the_classify_interface():
  model = bn_lstm.PixelClassifier(hidden_size=8, permute=True)
  images = np.random.default_rng(3).uniform(size=(4, 3, 3, 1)).astype(np.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
  logits, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, images)
  chex.assert_shape(logits, (4, 10))
  chex.assert_tree_all_finite(logits)
  assert not np.allclose(state['batch_stats']['cell']['cell_bn']['mean'][:9], 0)
  # The permutation is fixed: the same seed reorders the pixels the same way each time.
  np.testing.assert_array_equal(bn_lstm.pixel_permutation(64, 0), bn_lstm.pixel_permutation(64, 0))
  assert sorted(bn_lstm.pixel_permutation(64, 0)) == list(range(64))
