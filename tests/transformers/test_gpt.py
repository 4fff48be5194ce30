"""GPT / GPT-2: norm placement, tied output layer, causal KV-cached generation, sampling, presets."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.transformers import gpt

VOCAB, CONTEXT, WIDTH, LAYERS = 23, 16, 8, 2


def _tiny(pre_norm: bool) -> gpt.GPT:
  return gpt.GPT(vocab_size=VOCAB, max_len=CONTEXT, num_layers=LAYERS, num_heads=2,
                 hidden_dim=WIDTH, mlp_dim=4 * WIDTH, pre_norm=pre_norm,
                 scale_residual_init=pre_norm)


@functools.cache
def _params(model: gpt.GPT, scale: float = 1.0):
  params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 4), np.int32))['params']
  # Larger weights than N(0, 0.02) give peaked, varied next-token distributions, so equal
  # generations are not equal by accident (e.g. one token repeated).
  return jax.tree.map(lambda x: x * scale, params)


def test_tied_output_layer_and_parameter_layout():
  for pre_norm in (False, True):
    params = jax.eval_shape(_tiny(pre_norm).init, jax.random.key(0), np.zeros((1, 4), np.int32))
    params = params['params']
    # No separate output matrix: logits use wte, and only GPT-2 has a final LayerNorm.
    assert set(params) == {'wte', 'wpe', 'h_0', 'h_1'} | ({'ln_f'} if pre_norm else set())
    expected = (VOCAB * WIDTH + CONTEXT * WIDTH + LAYERS * (12 * WIDTH ** 2 + 13 * WIDTH)
                + (2 * WIDTH if pre_norm else 0))
    assert zoo.num_params(params) == expected


def test_block_norm_placement():
  x = 5.0 + 3.0 * np.random.default_rng(0).standard_normal((2, 6, WIDTH), np.float32)

  def block(pre_norm):
    return gpt.Block(num_heads=2, mlp_dim=4 * WIDTH, pre_norm=pre_norm)

  @jax.jit
  def outputs(x):
    results = {}
    for pre_norm in (False, True):
      params = block(pre_norm).init(jax.random.key(0), x)['params']
      # Silence both residual branches (the attention and MLP output projections).
      silenced = jax.tree_util.tree_map_with_path(
          lambda path, p: jnp.zeros_like(p) if 'out' in str(path) or 'c_proj' in str(path) else p,
          params)
      results[pre_norm] = (block(pre_norm).apply({'params': params}, x),
                           block(pre_norm).apply({'params': silenced}, x))
    return results

  results = outputs(x)
  # GPT-2 (pre-norm): the residual stream passes through un-normalised, so a block whose branches
  # output zero is the identity, and a normal block keeps the input's offset and scale.
  chex.assert_trees_all_close(results[True][1], x, atol=1e-6)
  assert float(jnp.mean(results[True][0])) > 3.0
  # GPT (post-norm): every block output is LayerNorm'd (unit scale, zero shift at init).
  for out in (results[False][0], results[False][1]):
    chex.assert_trees_all_close(out.mean(-1), np.zeros(out.shape[:-1]), atol=1e-5)
    chex.assert_trees_all_close(out.std(-1), np.ones(out.shape[:-1]), atol=1e-3)


def _uncached(model, params, prompt, key, new_tokens, **sampling):
  """Reference decoding without a cache: the full forward pass over the sequence so far.

  The positions not generated yet hold random tokens: a fixed length keeps one compiled program
  for every step, and only causal attention makes their content irrelevant, so the comparison
  with cached decoding (which cannot see them) also checks the causal mask.
  """
  batch, prompt_len = prompt.shape
  buffer = np.random.default_rng(9).integers(0, VOCAB, (batch, prompt_len + new_tokens))
  buffer = buffer.astype(np.int32)
  buffer[:, :prompt_len] = prompt

  @jax.jit
  def next_token(buffer, t, key):
    logits = model.apply({'params': params}, buffer)
    return gpt.sample_logits(key, logits[:, t], **sampling)

  for i, step_key in enumerate(jax.random.split(key, new_tokens)):
    t = prompt_len + i
    buffer[:, t] = np.asarray(next_token(buffer, t - 1, step_key))
  return buffer


@pytest.mark.parametrize('pre_norm,sampling', [
    (True, dict(temperature=0.0)),  # Greedy, GPT-2.
    (False, dict(temperature=0.8, top_k=10, top_p=0.9)),  # Sampled with the same keys, GPT.
])
def test_cached_generation_equals_uncached(pre_norm, sampling):
  model = _tiny(pre_norm)
  params = _params(model, scale=8.0)
  prompt = np.random.default_rng(2).integers(0, VOCAB, (2, 3)).astype(np.int32)
  key, new_tokens = jax.random.key(5), 9
  cached = gpt.generate(model, params, prompt, key, max_new_tokens=new_tokens, **sampling)
  chex.assert_shape(cached, (2, 3 + new_tokens))
  np.testing.assert_array_equal(cached[:, :3], prompt)
  np.testing.assert_array_equal(cached, _uncached(model, params, prompt, key, new_tokens,
                                                  **sampling))
  assert len(np.unique(np.asarray(cached[:, 3:]))) > 2  # Not a degenerate repetition.


def test_generate_checks_the_context_length():
  model = _tiny(pre_norm=True)
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(
      model.init, jax.random.key(0), np.zeros((1, 4), np.int32))['params'])
  with pytest.raises(ValueError, match='context length'):
    gpt.generate(model, params, np.zeros((1, 10), np.int32), jax.random.key(0),
                 max_new_tokens=CONTEXT - 9)


_LOGITS = np.random.default_rng(3).standard_normal((4, 50)).astype(np.float32) * 2


def test_top_k_keeps_exactly_the_k_largest():
  filtered = np.asarray(jax.jit(gpt.top_k_logits, static_argnums=1)(_LOGITS, 5))
  for row, original in zip(filtered, _LOGITS):
    kept = np.flatnonzero(np.isfinite(row))
    np.testing.assert_array_equal(np.sort(kept), np.sort(np.argsort(-original)[:5]))
    np.testing.assert_array_equal(row[kept], original[kept])
  # Ties: still exactly k.
  tied = np.asarray(gpt.top_k_logits(np.zeros((1, 10), np.float32), 3))
  assert np.isfinite(tied).sum() == 3


def test_top_p_keeps_the_minimal_nucleus():
  p = 0.75
  filtered = np.asarray(jax.jit(gpt.top_p_logits, static_argnums=1)(_LOGITS, p))
  for row, original in zip(filtered, _LOGITS):
    probs = np.exp(original - original.max())
    probs /= probs.sum()
    kept = np.isfinite(row)
    np.testing.assert_array_equal(row[kept], original[kept])
    # The kept tokens are the most probable ones, they reach p, and dropping the least probable of
    # them falls below p.
    assert probs[kept].min() > probs[~kept].max()
    assert probs[kept].sum() >= p
    assert probs[kept].sum() - probs[kept].min() < p
  # A hand-checked case: probabilities 0.5, 0.3, 0.15, 0.05 (shuffled) with p = 0.7 keep two.
  logits = np.log(np.array([[0.15, 0.5, 0.05, 0.3]], np.float32))
  np.testing.assert_array_equal(np.isfinite(gpt.top_p_logits(logits, 0.7)),
                                [[False, True, False, True]])


def test_sampling_respects_filters_and_temperature():
  keys = jax.random.split(jax.random.key(4), 200)

  @jax.jit
  def draws(keys):
    def draw(key, **kw):
      return gpt.sample_logits(key, _LOGITS, **kw)
    return {name: jax.vmap(functools.partial(draw, **kw))(keys) for name, kw in {
        'greedy': dict(temperature=0.0), 'cold': dict(temperature=1e-6),
        'top_k': dict(top_k=3), 'top_p': dict(top_p=0.5), 'warm': dict(temperature=1.0)}.items()}

  samples = {name: np.asarray(x) for name, x in draws(keys).items()}  # [200, 4] each
  argmax = _LOGITS.argmax(-1)
  np.testing.assert_array_equal(samples['greedy'], np.broadcast_to(argmax, (200, 4)))
  np.testing.assert_array_equal(samples['cold'], np.broadcast_to(argmax, (200, 4)))
  top3 = np.argsort(-_LOGITS, axis=-1)[:, :3]
  nucleus = np.isfinite(np.asarray(gpt.top_p_logits(_LOGITS, 0.5)))
  for row in range(4):
    assert set(samples['top_k'][:, row]) <= set(top3[row])
    assert nucleus[row, samples['top_p'][:, row]].all()
  assert len(set(samples['warm'][:, 0])) > 3  # Temperature 1 does sample.
  with pytest.raises(ValueError, match='temperature'):
    gpt.sample_logits(keys[0], _LOGITS, temperature=-1.0)


@pytest.mark.parametrize('name', ['gpt1', 'gpt2_small', 'gpt2_medium', 'gpt2_large', 'gpt2_xl'])
def test_zoo_counts_match_hugging_face(name):
  preset = zoo.get(name)
  assert zoo.count_params(name) == preset.reference_params
