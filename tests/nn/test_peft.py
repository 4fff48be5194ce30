"""Adapters (Houlsby et al. 2019), prefix tuning (Li & Liang 2021), prompt tuning (Lester et al.
2021): each trains only its own parameters; none can be merged, so merging raises."""

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from jaxpapers.nn import adapters, lora, prefix_tuning, prompt_tuning
from jaxpapers.transformers import gpt

MODEL = gpt.GPT(vocab_size=17, max_len=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                dropout_rate=0.0, attention_dropout_rate=0.0)
TOKENS = ((np.arange(4)[:, None] * 5 + np.arange(8)[None]) % 17).astype(np.int32)
METHODS = {
    'adapter': adapters.BottleneckAdapter(bottleneck=3),
    'prefix': prefix_tuning.PrefixTuning(length=3),
    'prompt': prompt_tuning.PromptTuning(length=3, init_tokens=(0, 17)),
}
ADDED = {
    'adapter': {f'h_{i}/{m}/adapter_{p}' for i in range(2) for m in ('attn/out', 'mlp/c_proj')
                for p in ('down', 'down_bias', 'up', 'up_bias')},
    'prefix': {f'h_{i}/attn/{kv}/prefix' for i in range(2) for kv in ('key', 'value')},
    'prompt': {'h_0/prompt'},
}


def _base_params():
  shapes = jax.eval_shape(MODEL.init, jax.random.key(0), TOKENS)['params']
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def _flat(tree):
  return {'/'.join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _finetune(apply, params, trainable, steps=40):
  tx = lora.partition_optimizer(optax.adam(1e-1), trainable)

  def loss_fn(p):
    return optax.softmax_cross_entropy_with_integer_labels(apply(p)[:, :-1], TOKENS[:, 1:]).mean()

  @jax.jit
  def train(params):
    def step(carry, _):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    return params, losses

  params, losses = train(params)
  # Gradients reach the method's parameters (a few soft prompts cannot learn the +1 rule on this
  # random model, so only a drop is asked for).
  assert losses[-1] < losses[0] - 0.01, losses
  return params


@pytest.mark.parametrize('name', list(METHODS))
def test_method_adds_its_parameters_trains_only_them_and_cannot_merge(name):
  method, base = METHODS[name], _base_params()
  params = method.init(MODEL, base, jax.random.key(2), TOKENS)
  added = set(_flat(params)) - set(_flat(base))
  assert added == ADDED[name]
  apply = jax.jit(lambda p: method.apply(MODEL, {'params': p}, TOKENS))
  out = apply(params)
  assert out.shape == (4, 8, 17)  # The prompt's positions are trimmed from the output.
  trainable = method.trainable(params)
  expected = ADDED[name] | ({k for k in _flat(base) if '/ln_' in '/' + k} if name == 'adapter'
                            else set())
  assert {k for k, t in _flat(trainable).items() if t} == expected
  tuned = _finetune(apply, params, trainable)
  before, after = _flat(params), _flat(tuned)
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed == expected, changed ^ expected
  with pytest.raises(ValueError, match='cannot be merged'):
    method.merge(tuned)


@pytest.mark.parametrize('name', list(METHODS))
def test_adapted_model_stays_causal_and_the_new_parameters_matter(name):
  method = METHODS[name]
  params = method.init(MODEL, _base_params(), jax.random.key(2), TOKENS)
  apply = jax.jit(lambda p, t: method.apply(MODEL, {'params': p}, t))
  out = np.asarray(apply(params, TOKENS))
  later = TOKENS.copy()
  later[:, 5:] = (later[:, 5:] + 3) % 17
  np.testing.assert_allclose(np.asarray(apply(params, later))[:, :5], out[:, :5], atol=1e-5)
  # Moving the method's own parameters moves the outputs, from the first position on.
  flat, rng = traverse_util.flatten_dict(params), np.random.default_rng(5)
  for path in flat:
    if '/'.join(path) in ADDED[name]:  # Random: LayerNorm would remove a constant shift.
      flat[path] = flat[path] + rng.standard_normal(flat[path].shape).astype(np.float32)
  moved = np.asarray(apply(traverse_util.unflatten_dict(flat), TOKENS))
  assert np.abs(moved[:, 0] - out[:, 0]).max() > 1e-3


def test_adapters_start_near_the_identity_and_prompts_from_token_embeddings():
  base = _base_params()
  params = METHODS['adapter'].init(MODEL, base, jax.random.key(2), TOKENS)
  near = jax.jit(lambda p: METHODS['adapter'].apply(MODEL, {'params': p}, TOKENS))(params)
  exact = jax.jit(MODEL.apply)({'params': base}, TOKENS)
  gap = float(np.abs(np.asarray(near) - np.asarray(exact)).max())
  assert 0 < gap < 0.05, gap
  prompt = _flat(METHODS['prompt'].init(MODEL, base, jax.random.key(2), TOKENS))['h_0/prompt']
  table = _flat(base)['wte/embedding']
  assert all(np.any(np.all(np.isclose(row, table), axis=1)) for row in prompt)


@pytest.mark.parametrize('name', ['prefix', 'prompt'])
def test_kv_cached_decoding_is_refused(name):
  params = METHODS[name].init(MODEL, _base_params(), jax.random.key(2), TOKENS)
  with pytest.raises(ValueError, match='decoding'):
    METHODS[name].apply(MODEL, {'params': params, 'cache': gpt.init_cache(MODEL, 4, 8)}, TOKENS,
                        decode=True, mutable=['cache'])
