"""LoRA, IA3 and BitFit: only the adapter parameters train; merged weights give the same outputs."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from jaxpapers.nn import lora
from jaxpapers.transformers import gpt

MODEL = gpt.GPT(vocab_size=17, max_len=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                dropout_rate=0.0, attention_dropout_rate=0.0)
# Each token is the previous one plus 1 (mod 17): a rule to learn.
TOKENS = ((np.arange(4)[:, None] * 5 + np.arange(8)[None]) % 17).astype(np.int32)


def _base_params():
  """Random 'pre-trained' weights, drawn with NumPy (no init to compile)."""
  shapes = jax.eval_shape(MODEL.init, jax.random.key(0), TOKENS)['params']
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def _flat(tree):
  return {'/'.join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _finetune(apply, params, trainable, steps=30):
  """Adam on next-token prediction of TOKENS through `partition_optimizer`; the tuned params."""
  tx = lora.partition_optimizer(optax.adam(3e-2), trainable)

  def loss_fn(p):
    logits = apply(p)[:, :-1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, TOKENS[:, 1:]).mean()

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
  assert losses[-1] < losses[0] - 0.05, losses  # Fine-tuning did learn something.
  return params


def _assert_only_masked_leaves_changed(before, after, trainable):
  before, after, trainable = _flat(before), _flat(after), _flat(trainable)
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed == {k for k, t in trainable.items() if t}, changed


def test_lora_starts_at_the_base_model_trains_only_adapters_and_merges_exactly():
  base = _base_params()
  adapter = lora.LoRA(rank=2, alpha=4.0)  # Targets: the query and value projections.
  params = adapter.init(MODEL, base, jax.random.key(2), TOKENS)
  flat = _flat(params)
  added = sorted(set(flat) - set(_flat(base)))
  assert added == [f'h_0/attn/{p}/lora_{m}' for p in ('query', 'value') for m in 'ab']
  assert flat['h_0/attn/query/lora_a'].shape == (8, 2)
  assert flat['h_0/attn/query/lora_b'].shape == (2, 8)
  assert np.all(flat['h_0/attn/value/lora_b'] == 0) and np.std(flat['h_0/attn/value/lora_a']) > 0.1
  # B = 0: the adapted model starts as the pre-trained one (to rounding: XLA fuses differently).
  apply = jax.jit(lambda p: adapter.apply(MODEL, {'params': p}, TOKENS))
  np.testing.assert_allclose(apply(params), jax.jit(MODEL.apply)({'params': base}, TOKENS),
                             atol=1e-6)

  trainable = adapter.trainable(params)
  tuned = _finetune(apply, params, trainable)
  _assert_only_masked_leaves_changed(params, tuned, trainable)
  merged = adapter.merge(tuned)
  assert set(_flat(merged)) == set(_flat(base))  # The base model's layout: no extra cost.
  np.testing.assert_allclose(jax.jit(MODEL.apply)({'params': merged}, TOKENS), apply(tuned),
                             atol=1e-5, rtol=1e-5)
  # Only the targeted kernels moved, by exactly (alpha / r) A B.
  moved = {k for k, v in _flat(merged).items() if not np.array_equal(v, _flat(base)[k])}
  assert moved == {'h_0/attn/query/kernel', 'h_0/attn/value/kernel'}
  t = _flat(tuned)
  np.testing.assert_allclose(
      _flat(merged)['h_0/attn/value/kernel'] - _flat(base)['h_0/attn/value/kernel'],
      2.0 * t['h_0/attn/value/lora_a'] @ t['h_0/attn/value/lora_b'], atol=1e-6)


def test_lora_update_is_scaled_by_alpha_over_rank_on_any_dense():
  x = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
  model = nn.Dense(4)
  base = {'kernel': np.ones((6, 4), np.float32), 'bias': np.ones((4,), np.float32)}
  adapter = lora.LoRA(rank=3, alpha=12.0, targets=('*',))
  params = adapter.init(model, base, jax.random.key(1), x)
  params['lora_b'] = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
  out = adapter.apply(model, {'params': params}, x)
  expected = x @ base['kernel'] + base['bias'] + 4.0 * x @ params['lora_a'] @ params['lora_b']
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_ia3_rescales_keys_values_and_ffn_inputs_and_merges_exactly():
  base = _base_params()
  adapter = lora.IA3()
  params = adapter.init(MODEL, base, jax.random.key(2), TOKENS)
  added = sorted(set(_flat(params)) - set(_flat(base)))
  assert added == ['h_0/attn/key/ia3_out', 'h_0/attn/value/ia3_out', 'h_0/mlp/c_proj/ia3_in']
  assert _flat(params)['h_0/mlp/c_proj/ia3_in'].shape == (16,)  # d_ff-wide, as l_ff.
  apply = jax.jit(lambda p: adapter.apply(MODEL, {'params': p}, TOKENS))
  np.testing.assert_allclose(apply(params), jax.jit(MODEL.apply)({'params': base}, TOKENS),
                             atol=1e-6)  # Ones: the adapted model starts as the pre-trained one.
  trainable = adapter.trainable(params)
  tuned = _finetune(apply, params, trainable)
  _assert_only_masked_leaves_changed(params, tuned, trainable)
  merged = adapter.merge(tuned)
  assert set(_flat(merged)) == set(_flat(base))
  np.testing.assert_allclose(jax.jit(MODEL.apply)({'params': merged}, TOKENS), apply(tuned),
                             atol=1e-5, rtol=1e-5)


def test_bitfit_trains_only_bias_terms():
  base = _base_params()
  trainable = lora.bitfit_mask(base)
  names = {k for k, t in _flat(trainable).items() if t}
  assert names and all(k.endswith('/bias') for k in names)
  # Dense and LayerNorm biases both train; kernels, gains and embeddings stay.
  assert {'h_0/attn/query/bias', 'h_0/ln_1/bias', 'ln_f/bias'} <= names
  assert _flat(lora.bitfit_mask(base, extra=('ln_f',)))['ln_f/scale']  # A head trained in full.
  tuned = _finetune(jax.jit(lambda p: MODEL.apply({'params': p}, TOKENS)), base, trainable)
  _assert_only_masked_leaves_changed(base, tuned, trainable)


def test_bad_base_params_or_targets_are_clear_errors():
  base = _base_params()
  with pytest.raises(ValueError, match='layout'):
    lora.LoRA().init(MODEL, {'wte': base['wte']}, jax.random.key(0), TOKENS)
  with pytest.raises(ValueError, match='no nn.Dense'):
    lora.LoRA(targets=('nothing',)).init(MODEL, base, jax.random.key(0), TOKENS)
