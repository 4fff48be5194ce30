"""Fast weights (Ba et al. 2016, arXiv:1610.06258): recurrence, attention form, LN, classifier."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers import zoo
from jaxpapers.data import associative_retrieval as ar
from jaxpapers.recurrent import fast_weights as fw

DECAY, FAST_LR = 0.95, 0.5
LN_EPS = 1e-6  # flax.linen.LayerNorm's default.


def _fast_matrix(past: np.ndarray) -> np.ndarray:
  """A(t) by iterating Eq. (1) from A(0) = 0 over h(1)..h(t)."""
  a = np.zeros((past.shape[-1],) * 2)
  for h in past:
    a = DECAY * a + FAST_LR * np.outer(h, h)
  return a


@pytest.mark.parametrize('steps', [1, 3, 7])
def test_readout_equals_fast_weight_matrix(steps):
  rng = np.random.default_rng(steps)
  past = rng.normal(size=(steps, 5))
  query = rng.normal(size=5)
  got = fw.fast_weights_readout(jnp.asarray(past), jnp.asarray(query), DECAY, FAST_LR)
  chex.assert_trees_all_close(got, _fast_matrix(past) @ query, rtol=1e-5, atol=1e-6)


def test_readout_batches_over_leading_axes():
  rng = np.random.default_rng(0)
  past = rng.normal(size=(2, 3, 4, 5))
  query = rng.normal(size=(2, 3, 5))
  got = fw.fast_weights_readout(jnp.asarray(past), jnp.asarray(query), DECAY, FAST_LR)
  chex.assert_shape(got, (2, 3, 5))
  chex.assert_trees_all_close(got[1, 2], _fast_matrix(past[1, 2]) @ query[1, 2], rtol=1e-5)


def _layer_norm(z, scale, bias):
  mean = z.mean(-1, keepdims=True)
  var = ((z - mean) ** 2).mean(-1, keepdims=True)
  return (z - mean) / np.sqrt(var + LN_EPS) * scale + bias


def _attend(past, query):
  """Eq. (4) in NumPy: eta sum_tau lambda^(t - tau) h(tau) (h(tau)^T query), per batch row."""
  weights = DECAY ** np.arange(past.shape[1] - 1, -1, -1)
  return FAST_LR * np.einsum('bt,btj->bj', weights * np.einsum('btj,bj->bt', past, query), past)


def _reference_sequence(params, xs, inner_steps):
  """Explicit unrolled Eqs. (2), (4), (5): memory kept as the list of past states, never as A."""
  w, c = params['recurrent']['kernel'], params['input']['kernel']
  scale, bias = params['layer_norm']['scale'], params['layer_norm']['bias']
  batch, steps, _ = xs.shape
  h = np.zeros((batch, w.shape[0]))
  past = np.zeros((batch, 0, w.shape[0]))  # h(1)..h(t); h(0) = 0 adds nothing to A.
  outputs = []
  for t in range(steps):
    boundary = h @ w + xs[:, t] @ c
    hs = np.maximum(boundary, 0)
    for _ in range(inner_steps):
      hs = np.maximum(_layer_norm(boundary + _attend(past, hs), scale, bias), 0)
    h = hs
    past = np.concatenate([past, h[:, None]], axis=1)
    outputs.append(h)
  return np.stack(outputs, axis=1)


def _random_params(shapes, seed):
  """Random values for every parameter, LN gain around 1, so no test relies on the init."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: (path[-1].key == 'scale') + 0.5 * rng.normal(size=x.shape).astype(x.dtype),
      shapes)


@pytest.mark.parametrize('inner_steps', [1, 2, 3])
def test_scanned_cell_matches_unrolled_attention_reference(inner_steps):
  xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
  rnn = nn.RNN(fw.FastWeightsCell(5, inner_steps=inner_steps))
  shapes = jax.eval_shape(rnn.init, jax.random.key(0), xs)['params']
  params = _random_params(shapes, seed=inner_steps)
  got = jax.jit(rnn.apply)({'params': params}, xs)
  want = _reference_sequence(jax.tree.map(np.asarray, params['cell']), np.asarray(xs),
                             inner_steps)
  chex.assert_shape(got, (2, 6, 5))
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_carry_holds_eq1_memory_after_the_sequence():
  xs = jax.random.normal(jax.random.key(2), (2, 5, 3))
  rnn = nn.RNN(fw.FastWeightsCell(4), return_carry=True)
  ((fast, h_last), hs), _ = jax.jit(rnn.init_with_output)(jax.random.key(0), xs)
  chex.assert_trees_all_close(h_last, hs[:, -1])
  for b in range(2):
    chex.assert_trees_all_close(fast[b], _fast_matrix(np.asarray(hs[b])), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('inner_steps', [1, 2])
def test_attention_memory_gives_the_matrix_memory_states_and_gradients(inner_steps):
  xs = jax.random.normal(jax.random.key(4), (3, 7, 4))
  matrix = nn.RNN(fw.FastWeightsCell(6, inner_steps=inner_steps))
  attention = nn.RNN(fw.FastWeightsCell(6, inner_steps=inner_steps, memory_length=7))
  params = _random_params(jax.eval_shape(matrix.init, jax.random.key(0), xs), seed=inner_steps)
  loss = lambda rnn: jax.jit(jax.value_and_grad(lambda p: jnp.sum(rnn.apply(p, xs) ** 2)))(params)
  chex.assert_trees_all_close(loss(attention), loss(matrix), rtol=1e-4, atol=1e-5)


def test_layer_norm_normalises_each_inner_preactivation():
  cell = fw.FastWeightsCell(8, inner_steps=2)
  x = jax.random.normal(jax.random.key(0), (3, 4))
  h = jax.nn.relu(jax.random.normal(jax.random.key(1), (3, 8)))
  fast = 0.5 * h[:, :, None] * h[:, None, :]
  (_, h_next), variables = jax.jit(
      lambda key: cell.init_with_output(key, (fast, h), x, capture_intermediates=True,
                                        mutable=True))(jax.random.key(2))
  normalised = variables['intermediates']['layer_norm']['__call__']
  assert len(normalised) == 2  # One normalisation per inner step.
  for z in normalised:  # LN's gain and bias are at their initial 1 and 0.
    chex.assert_trees_all_close(z.mean(-1), jnp.zeros(3), atol=1e-5)
    chex.assert_trees_all_close(z.var(-1), jnp.ones(3), atol=1e-4)
  chex.assert_trees_all_close(h_next, jax.nn.relu(normalised[-1]))  # LN sits just before f.


@pytest.mark.parametrize('layer_norm', [True, False])
def test_layer_norm_makes_output_invariant_to_slow_weight_scale(layer_norm):
  # Scaling W and C by k scales h_0 and every pre-activation by k; only LN undoes it.
  xs = jax.random.normal(jax.random.key(3), (2, 5, 3))
  rnn = nn.RNN(fw.FastWeightsCell(6, layer_norm=layer_norm))
  hs, variables = jax.jit(rnn.init_with_output)(jax.random.key(0), xs)
  scaled = jax.tree_util.tree_map_with_path(
      lambda path, x: 10.0 * x if path[-2].key in ('recurrent', 'input') else x, variables)
  same = np.allclose(hs, jax.jit(rnn.apply)(scaled, xs), rtol=1e-4, atol=1e-5)
  assert same == layer_norm


@pytest.mark.parametrize('cell', fw.CELLS)
def test_classifier_logits_shape_and_dtype(cell):
  # Shapes only (no compilation); the cells' values are checked in test_baselines.py and above.
  tokens = jax.ShapeDtypeStruct((3, 11), jnp.int32)
  model = fw.RetrievalClassifier(cell=cell, hidden_size=8)
  variables = jax.eval_shape(model.init, jax.random.key(0), tokens)
  logits = jax.eval_shape(model.apply, variables, tokens)
  assert (logits.shape, logits.dtype) == ((3, 10), jnp.float32)


@pytest.mark.parametrize('cell', fw.CELLS)
@pytest.mark.parametrize('size', [20, 50])
def test_parameter_count_formula(cell, size):
  model = fw.RetrievalClassifier(cell=cell, hidden_size=size)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 11), jnp.int32))
  assert zoo.num_params(shapes['params']) == fw.num_params(cell, size)


def test_parameter_count_without_layer_norm():
  model = fw.RetrievalClassifier(hidden_size=20, layer_norm=False)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 11), jnp.int32))
  assert zoo.num_params(shapes['params']) == fw.num_params('fast_weights', 20, layer_norm=False)


def test_table1_presets_are_registered():
  assert zoo.count_params('retrieval_fast_weights_r20') == fw.num_params('fast_weights', 20)
  assert {f'retrieval_{c}_r{r}' for c in fw.CELLS for r in (20, 50, 100)} <= set(zoo.names())


def test_unknown_cell_is_rejected():
  with pytest.raises(ValueError, match='unknown cell'):
    jax.eval_shape(fw.RetrievalClassifier(cell='gru').init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, 11), jnp.int32))


def test_short_training_run_lowers_the_loss():
  data = ar.generate(256, np.random.default_rng(0), num_pairs=2)
  tokens, labels = jnp.asarray(data['tokens']), jnp.asarray(data['label'])
  model = fw.RetrievalClassifier(hidden_size=16)
  params = jax.jit(model.init)(jax.random.key(0), tokens)
  optimizer = optax.adam(3e-3)

  def loss_fn(p):
    logits = model.apply(p, tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = optimizer.init(params)
  losses = []
  for _ in range(40):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[0] > 2.0  # About log(10) at initialisation.
  assert losses[-1] < 0.6 * losses[0], losses
