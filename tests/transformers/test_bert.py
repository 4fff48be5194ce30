"""BERT: masked-LM corruption statistics, encoder properties, heads, loss, presets."""

import chex
import jax
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.transformers import bert

PAD, CLS, SEP, MASK = 0, 1, 2, 3
TINY = bert.BertConfig(vocab_size=50, hidden_dim=8, num_layers=2, num_heads=2, mlp_dim=16,
                       max_len=12, initializer_range=0.5)  # Large weights: visible effects.


def _batch(batch=1024, length=128, vocab=1000, seed=0):
  """[CLS] words [SEP] [PAD]...: rows padded to random lengths."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, vocab, (batch, length)).astype(np.int32)
  lengths = rng.integers(length // 4, length + 1, batch)
  tokens[:, 0] = CLS
  tokens[np.arange(batch), lengths - 1] = SEP
  tokens[np.arange(length)[None, :] >= lengths[:, None]] = PAD
  return tokens


def test_mask_tokens_statistics():
  vocab = 1000
  tokens = _batch(vocab=vocab)
  corrupt = jax.jit(lambda key, t: bert.mask_tokens(
      key, t, vocab_size=vocab, mask_id=MASK, special_ids=(PAD, CLS, SEP)))
  inputs, chosen = corrupt(jax.random.key(0), tokens)
  inputs, chosen = np.asarray(inputs), np.asarray(chosen)
  special = np.isin(tokens, (PAD, CLS, SEP))
  assert not chosen[special].any()  # Special tokens are never chosen...
  np.testing.assert_array_equal(inputs[special], tokens[special])  # ...nor changed.
  np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
  # 15% of each row's maskable tokens (rounded).
  np.testing.assert_array_equal(chosen.sum(1), np.maximum(1, np.round(0.15 * (~special).sum(1))))
  masked = inputs[chosen] == MASK
  unchanged = inputs[chosen] == tokens[chosen]
  randomised = ~masked & ~unchanged
  # ~12,000 chosen tokens: the binomial standard deviations are below 0.4%.
  assert abs(masked.mean() - 0.8) < 0.015
  assert abs(randomised.mean() - 0.1) < 0.01
  assert abs(unchanged.mean() - 0.1) < 0.01  # (plus 0.1 / vocab for random picks of itself)
  # Random replacements cover the vocabulary.
  assert len(np.unique(inputs[chosen][randomised])) > 500


def _tiny_batch():
  tokens = _batch(batch=2, length=10, vocab=TINY.vocab_size, seed=1)
  tokens[0, 6:] = PAD  # Row 0 has padding from position 6 (row 1 is as drawn).
  segments = (np.arange(10)[None, :] >= 4).astype(np.int32).repeat(2, 0)
  return tokens, segments, tokens != PAD


@pytest.fixture(scope='module')
def tiny_params():
  tokens, segments, attention = _tiny_batch()
  return jax.jit(bert.BertForPreTraining(TINY).init)(jax.random.key(0), tokens, segments,
                                                      attention)['params']


def test_heads_shapes_padding_and_bidirectionality(tiny_params):
  model = bert.BertForPreTraining(TINY)
  tokens, segments, attention = _tiny_batch()
  padded_changed = tokens.copy()
  padded_changed[0, 6:] = 7  # Content under the padding mask.
  last_changed = tokens.copy()
  last_changed[0, 5] = (last_changed[0, 5] + 1) % TINY.vocab_size
  positions = np.array([[1, 3], [2, 5]], np.int32)

  @jax.jit
  def run(params):
    def apply(t, **kw):
      return model.apply({'params': params}, t, segments, attention, **kw)
    return apply(tokens), apply(padded_changed), apply(last_changed), apply(
        tokens, masked_positions=positions)

  (mlm, nsp), (mlm_pad, _), (mlm_last, _), (mlm_gathered, _) = run(tiny_params)
  chex.assert_shape([mlm, nsp, mlm_gathered], [(2, 10, TINY.vocab_size), (2, 2),
                                               (2, 2, TINY.vocab_size)])
  chex.assert_trees_all_close(mlm_gathered, np.take_along_axis(mlm, positions[..., None], 1),
                              atol=1e-5)
  chex.assert_trees_all_close(mlm_pad[0, :6], mlm[0, :6], atol=1e-5)  # Padding is invisible.
  # Bidirectional: changing position 5 changes the predictions at earlier positions too.
  assert np.abs(mlm_last[0, :5] - mlm[0, :5]).max(-1).min() > 1e-3


def test_parameter_layout_tied_decoder_and_post_norm(tiny_params):
  h, v, ff, p = TINY.hidden_dim, TINY.vocab_size, TINY.mlp_dim, TINY.max_len
  assert set(tiny_params) == {'bert', 'transform', 'transform_LayerNorm', 'mlm_bias',
                              'seq_relationship'}  # No decoder matrix: it is word_embeddings.
  layer = 4 * (h * h + h) + 2 * h + h * ff + ff + ff * h + h + 2 * h
  encoder = (v + p + 2) * h + 2 * h + TINY.num_layers * layer + h * h + h
  assert zoo.num_params(tiny_params['bert']) == encoder
  assert zoo.num_params(tiny_params) == encoder + h * h + 3 * h + v + 2 * h + 2

  # Post-norm: each layer's output is LayerNorm'd (zero mean, unit variance at init).
  x = 3.0 + 2.0 * np.random.default_rng(0).standard_normal((2, 10, h), np.float32)
  layer_params = tiny_params['bert']['layer_0']
  out = jax.jit(lambda x: bert.BertLayer(TINY).apply({'params': layer_params}, x, None,
                                                     train=False))(x)
  chex.assert_trees_all_close(out.mean(-1), np.zeros((2, 10)), atol=1e-5)
  chex.assert_trees_all_close(out.std(-1), np.ones((2, 10)), atol=1e-3)


def test_pretraining_loss_closed_form():
  # Uniform predictions: log V for the MLM term (weighted mean) plus log 2 for NSP.
  targets = np.array([[3, 4, 5]], np.int32)
  weights = np.array([[1, 1, 0]], np.float32)
  loss_fn = jax.jit(bert.pretraining_loss)
  loss = loss_fn(np.zeros((1, 3, 50), np.float32), np.zeros((1, 2), np.float32), targets, weights,
                 np.array([1], np.int32))
  np.testing.assert_allclose(loss, np.log(50) + np.log(2), rtol=1e-6)
  # Only the chosen positions count: a wrong confident prediction at a weight-0 position is free.
  logits = np.zeros((1, 3, 50), np.float32)
  logits[0, 2, 0] = 100.0
  np.testing.assert_allclose(
      loss_fn(logits, np.zeros((1, 2), np.float32), targets, weights, np.array([1], np.int32)),
      loss, rtol=1e-6)


@pytest.mark.parametrize('name', ['bert_base', 'bert_large'])
def test_zoo_counts_match_hugging_face(name):
  assert zoo.count_params(name) == zoo.get(name).reference_params
