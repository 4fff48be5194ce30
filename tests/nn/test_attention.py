"""Plain, chunked (Rabe & Staats 2021) and multi-head attention."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn.attention import MultiHeadAttention, chunked_attention, dot_product_attention

B, H, D = 2, 3, 4


# Inputs come from NumPy: every eager JAX op would be one more XLA compilation.
def _qkv(q_len, k_len, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(rng.standard_normal((B, length, H, D), np.float32)
               for length in (q_len, k_len, k_len))


def _reference(q, k, v, mask):
  """Eq. 1 of Vaswani et al. written out, for rows with at least one visible key."""
  scores = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  if mask is not None:
    scores = jnp.where(mask, scores, -1e30)
  return jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(scores, axis=-1), v)


def _masks(q_len, k_len):
  full = np.random.default_rng(7).random((B, H, q_len, k_len)) < 0.7
  full[..., 0] = True
  lengths = np.array([k_len, k_len - 3])
  padding = np.arange(k_len)[None, None, None, :] < lengths[:, None, None, None]
  return {'none': None, 'padding': padding, 'full': full}


def test_plain_attention_is_softmax_qk_v():
  q, k, v = _qkv(5, 6)
  masks = list(_masks(5, 6).values())
  tril = np.tril(np.ones((5, 6), bool))

  @jax.jit
  def both(q, k, v):
    ours = [dot_product_attention(q, k, v, m) for m in masks]
    ours.append(dot_product_attention(q, k, v, causal=True))
    return ours, [_reference(q, k, v, m) for m in masks + [tril]]

  ours, reference = both(q, k, v)
  chex.assert_trees_all_close(ours, reference, atol=1e-6)


# (q_len, k_len, query_chunk_size, key_chunk_size, mask kind, causal): odd lengths that no chunk
# size divides, exact division, and chunks larger than the sequence.
_CASES = [(7, 11, 3, 4, 'full', True), (8, 8, 4, 2, 'padding', False), (5, 6, 64, 64, 'none', True)]


def test_chunked_matches_plain_outputs_and_gradients():
  inputs = [_qkv(q_len, k_len, seed=i) for i, (q_len, k_len, *_) in enumerate(_CASES)]

  @jax.jit  # One program for every case: compiling is what costs time on CPU.
  def outputs_and_grads(inputs):
    results = []
    for (q_len, k_len, q_chunk, k_chunk, mask_kind, causal), qkv in zip(_CASES, inputs):
      mask = _masks(q_len, k_len)[mask_kind]
      plain = functools.partial(dot_product_attention, mask=mask, causal=causal)
      chunked = functools.partial(chunked_attention, mask=mask, causal=causal,
                                  query_chunk_size=q_chunk, key_chunk_size=k_chunk)
      for fn in (plain, chunked):
        out, vjp = jax.vjp(fn, *qkv)
        # A cotangent that differs across positions and features.
        results.append((out, vjp(jnp.cos(out))))
    return results

  results = outputs_and_grads(inputs)
  for i, case in enumerate(_CASES):
    (out_plain, grads_plain), (out_chunked, grads_chunked) = results[2 * i:2 * i + 2]
    chex.assert_shape(out_chunked, (B, case[0], H, D))
    chex.assert_trees_all_close(out_chunked, out_plain, atol=1e-5, custom_message=str(case))
    chex.assert_trees_all_close(grads_chunked, grads_plain, atol=1e-5, custom_message=str(case))


def test_fully_masked_rows_give_zeros_and_zero_gradients():
  q, k, v = _qkv(6, 5)
  mask = np.ones((B, 1, 6, 5), bool)
  mask[0, :, 2] = mask[1, :, 4] = False
  fns = (dot_product_attention,
         functools.partial(chunked_attention, query_chunk_size=4, key_chunk_size=2))

  @jax.jit
  def run(q, k, v):
    results = []
    for fn in fns:
      out, vjp = jax.vjp(lambda q, k, v, fn=fn: fn(q, k, v, mask), q, k, v)
      # The masked rows' output does not depend on anything: a cotangent on them alone gives
      # zero gradients; a cotangent everywhere gives finite ones.
      only_masked_rows = jnp.zeros_like(out).at[0, 2].set(1.0).at[1, 4].set(1.0)
      results.append((out, vjp(only_masked_rows), vjp(jnp.ones_like(out))))
    return results

  for out, grads_masked_rows, grads_all in run(q, k, v):
    np.testing.assert_array_equal(out[0, 2], 0.0)
    np.testing.assert_array_equal(out[1, 4], 0.0)
    for g in grads_masked_rows:
      np.testing.assert_array_equal(g, 0.0)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads_all)


def _largest_intermediate(jaxpr) -> int:
  """Largest number of elements of any value inside `jaxpr`, nested jaxprs included."""
  largest = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      largest = max(largest, int(np.prod(getattr(var.aval, 'shape', ()))))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, 'jaxpr', sub)  # ClosedJaxpr -> Jaxpr.
        if hasattr(sub, 'eqns'):
          largest = max(largest, _largest_intermediate(sub))
  return largest


def test_chunked_attention_never_materialises_the_score_matrix():
  """The paper's claim, forward and backward: no [q_len, k_len] array per head exists."""
  length = 64
  q, k, v = _qkv(length, length)
  mask = np.ones((B, 1, 1, length), bool)  # A padding mask is O(length) and stays so.

  def largest(fn):
    grad = jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v, mask, causal=True)), argnums=(0, 1, 2))
    return _largest_intermediate(jax.make_jaxpr(grad)(q, k, v).jaxpr)

  score_matrix = B * H * length * length
  assert largest(dot_product_attention) >= score_matrix  # The check can see the big array.
  chunked = functools.partial(chunked_attention, query_chunk_size=8, key_chunk_size=16)
  assert largest(chunked) < score_matrix // 4


def test_attention_dropout_drops_weights_and_rescales_survivors():
  # With v[j] = e_j (head_dim = k_len) the output rows are the dropped-out attention weights.
  q_len, k_len, rate = 64, 8, 0.3
  q, k, _ = _qkv(q_len, k_len)
  q, k = (np.pad(x, [(0, 0), (0, 0), (0, 0), (0, k_len - D)]) for x in (q, k))
  v = np.broadcast_to(np.eye(k_len, dtype=np.float32)[None, :, None, :], (B, k_len, H, k_len))
  fns = (dot_product_attention,
         functools.partial(chunked_attention, query_chunk_size=16, key_chunk_size=4))
  results = jax.jit(lambda q, k, v: [
      (fn(q, k, v), fn(q, k, v, dropout_rate=rate, dropout_rng=jax.random.key(3))) for fn in fns
  ])(q, k, v)
  for weights, dropped in results:
    kept = dropped != 0
    assert abs(float(jnp.mean(~kept)) - rate) < 0.03
    chex.assert_trees_all_close(jnp.where(kept, dropped, 0.0),
                                jnp.where(kept, weights / (1 - rate), 0.0), atol=1e-6)
  for fn in fns:
    with pytest.raises(ValueError, match='dropout_rng'):
      fn(q, k, v, dropout_rate=rate)


def test_bad_mask_shape_raises():
  q, k, v = _qkv(4, 5)
  with pytest.raises(ValueError, match='broadcast'):
    chunked_attention(q, k, v, np.ones((B, 1, 4, 4), bool))


def _mha_inputs(length=7, features=12):
  return np.random.default_rng(1).standard_normal((B, length, features), np.float32)


def test_mha_shapes_and_cross_attention():
  x = _mha_inputs()
  memory = jax.ShapeDtypeStruct((B, 5, 6), jnp.float32)
  mha = MultiHeadAttention(num_heads=2, qkv_features=8, out_features=10)
  variables = jax.eval_shape(mha.init, jax.random.key(0), x, memory)
  chex.assert_shape(jax.eval_shape(mha.apply, variables, x, memory), (B, 7, 10))
  params = variables['params']
  chex.assert_shape([params['query']['kernel'], params['key']['kernel'], params['out']['kernel']],
                    [(12, 8), (6, 8), (8, 10)])
  with pytest.raises(ValueError, match='divisible'):
    jax.eval_shape(MultiHeadAttention(num_heads=5).init, jax.random.key(0), x)


def test_mha_padding_mask_and_chunked_attention_fn():
  x = _mha_inputs()
  plain = MultiHeadAttention(num_heads=3)
  chunked = MultiHeadAttention(num_heads=3, attention_fn=functools.partial(
      chunked_attention, query_chunk_size=4, key_chunk_size=2))
  params = jax.jit(plain.init)(jax.random.key(0), x)
  mask = (np.arange(7) < 5)[None, None, None, :]
  changed = x.copy()
  changed[:, 5:] = 100.0

  @jax.jit
  def run(x, changed):
    return (plain.apply(params, x, mask=mask), plain.apply(params, changed, mask=mask),
            plain.apply(params, x, causal=True), chunked.apply(params, x, causal=True))

  out, out_changed, causal_plain, causal_chunked = run(x, changed)
  # Padded keys are invisible: the real positions' outputs ignore what the padding holds.
  chex.assert_trees_all_close(out[:, :5], out_changed[:, :5], atol=1e-5)
  chex.assert_trees_all_close(causal_chunked, causal_plain, atol=1e-5)


def test_mha_kv_cache_decoding_equals_full_causal_forward():
  length = 7
  x = _mha_inputs(length)
  mha = MultiHeadAttention(num_heads=3)
  variables = jax.jit(functools.partial(mha.init, decode=True))(jax.random.key(0), x)
  params, cache = variables['params'], variables['cache']
  chex.assert_shape(cache['cached_key'], (B, length, 3, 4))
  full = jax.jit(functools.partial(mha.apply, causal=True))({'params': params}, x)

  @jax.jit
  def step(cache, chunk):
    out, updated = mha.apply({'params': params, 'cache': cache}, chunk, decode=True,
                             mutable=['cache'])
    return updated['cache'], out

  outputs = []
  # A 3-token prefix in one call, then one token per call.
  for start, stop in [(0, 3)] + [(i, i + 1) for i in range(3, length)]:
    cache, out = step(cache, x[:, start:stop])
    outputs.append(out)
  assert int(cache['cache_index']) == length
  chex.assert_trees_all_close(np.concatenate(outputs, axis=1), full, atol=1e-5)
