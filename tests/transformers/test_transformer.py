"""The Transformer (Vaswani et al. 2017): encodings, layout, masks, loss, decoding, torch parity."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.transformers import transformer as tf

PAD, BOS, EOS = 0, 1, 2
TINY = tf.TransformerConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=24, num_encoder_layers=1,
                            num_decoder_layers=1, dropout_rate=0.0)


def _source_and_target(seed=0):
  rng = np.random.default_rng(seed)
  source = rng.integers(3, TINY.vocab_size, (2, 6)).astype(np.int32)
  source[1, 4:] = PAD
  target_in = rng.integers(3, TINY.vocab_size, (2, 5)).astype(np.int32)
  target_in[:, 0] = BOS
  return source, target_in


@pytest.fixture(scope='module')
def tiny_params():
  """Random weights drawn with NumPy (compiling `init` costs more than the rest of a test).

  Kernels and embeddings are twice as large as at init and LayerNorm gains and biases vary, so
  next-token distributions are peaked and some decoded sequences end early.
  """
  shapes = jax.eval_shape(tf.Transformer(TINY).init, jax.random.key(0), *_source_and_target())
  rng = np.random.default_rng(0)

  def draw(path, shape):
    noise = rng.standard_normal(shape.shape)
    name = path[-1].key
    if name == 'scale':
      return 1.0 + 0.2 * noise
    if name == 'bias':
      return 0.2 * noise
    return 2.0 * noise / np.sqrt(shape.shape[-1] if name == 'embedding' else shape.shape[0])

  return jax.tree_util.tree_map_with_path(lambda p, s: draw(p, s).astype(np.float32),
                                          shapes['params'])


def test_sinusoidal_encoding_formula_and_relative_positions():
  d, offset = 8, 5
  positions = np.arange(20)
  pe = np.asarray(jax.jit(tf.sinusoidal_encoding, static_argnums=1)(positions, d))
  i = np.arange(d // 2)
  angles = positions[:, None] / 10000.0 ** (2 * i / d)
  np.testing.assert_allclose(pe[:, 0::2], np.sin(angles), atol=1e-5)
  np.testing.assert_allclose(pe[:, 1::2], np.cos(angles), atol=1e-5)
  # Section 3.5: PE(pos + k) is a linear function of PE(pos), the same for every pos: a rotation
  # of each (sin, cos) pair by the angle offset / 10000^(2i/d).
  shifted = np.linalg.lstsq(pe[:-offset], pe[offset:], rcond=None)[0]
  np.testing.assert_allclose(pe[:-offset] @ shifted, pe[offset:], atol=1e-4)


def test_shared_embedding_layout_and_counts():
  params = jax.eval_shape(tf.Transformer(TINY).init, jax.random.key(0),
                          *_source_and_target())['params']
  # One embedding matrix serves both stacks and the output layer; there is no other vocab matrix.
  assert set(params) == {'embed', 'encoder_0', 'decoder_0'}
  assert [x.shape for x in jax.tree.leaves(params) if TINY.vocab_size in x.shape] == [(13, 16)]
  assert set(params['decoder_0']) == {'self_attn', 'norm1', 'multihead_attn', 'norm2',
                                      'FeedForward_0', 'norm3'}
  v, d, f = TINY.vocab_size, TINY.d_model, TINY.d_ff
  closed_form = v * d + (4 * d * d + 2 * d * f + f + 9 * d) + (8 * d * d + 2 * d * f + f + 15 * d)
  assert zoo.num_params(params) == closed_form
  assert zoo.count_params('transformer_base') == 63_082_496
  assert zoo.count_params('transformer_big') == 214_245_376


def test_embedding_scale_post_norm_and_source_padding(tiny_params):
  source, target_in = _source_and_target()
  no_layers = tf.Transformer(tf.TransformerConfig(**{**TINY.__dict__, 'num_encoder_layers': 0}))
  model = tf.Transformer(TINY)

  @jax.jit
  def run(params):
    embedded = no_layers.apply({'params': {'embed': params['embed']}}, source,
                               method=tf.Transformer.encode)
    encoded = model.apply({'params': params}, source, method=tf.Transformer.encode)
    logits = [model.apply({'params': params}, s, t) for s, t in
              ((source, target_in), (source[1:, :4], target_in[1:]))]
    return embedded, encoded, logits

  embedded, encoded, (logits, logits_unpadded) = run(tiny_params)
  # Section 3.4-3.5: the encoder input is E[x] sqrt(d_model) + PE.
  table = np.asarray(tiny_params['embed']['embedding'])
  expected = table[source] * np.sqrt(TINY.d_model) + tf.sinusoidal_encoding(np.arange(6), 16)
  chex.assert_trees_all_close(embedded, expected, atol=1e-5)
  # Post-norm: the encoder output is the last LayerNorm's output (its gain and bias applied to a
  # standardised vector).
  norm = tiny_params['encoder_0']['norm2']
  standardised = (encoded - norm['bias']) / norm['scale']
  chex.assert_trees_all_close(standardised.mean(-1), np.zeros((2, 6)), atol=1e-5)
  chex.assert_trees_all_close(standardised.std(-1), np.ones((2, 6)), atol=1e-3)
  chex.assert_shape(logits, (2, 5, TINY.vocab_size))
  # Source padding is invisible: example 1 (4 tokens, then padding) decodes as its 4 tokens alone.
  chex.assert_trees_all_close(logits_unpadded[0], logits[1], atol=5e-5, rtol=1e-5)


def test_label_smoothing_closed_form_and_minimiser():
  eps, vocab = 0.1, 7
  logits = np.random.default_rng(0).standard_normal((3, vocab)).astype(np.float32)
  targets = np.array([0, 3, 6], np.int32)
  loss_fn = jax.jit(tf.label_smoothed_cross_entropy)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -(1 - eps) * log_p[np.arange(3), targets] - eps / vocab * log_p.sum(-1)
  np.testing.assert_allclose(loss_fn(logits, targets, eps), expected, rtol=1e-5)
  # The smoothed target q = (1 - eps) one_hot + eps / V minimises it, where it equals H(q).
  q = np.full((1, vocab), eps / vocab, np.float32)
  q[0, 2] += 1 - eps
  at_q = loss_fn(np.log(q), np.array([2], np.int32), eps)
  np.testing.assert_allclose(at_q, -(q * np.log(q)).sum(), rtol=1e-5)
  nearby = loss_fn(np.log(q) + 0.1 * logits[:1], np.array([2], np.int32), eps)
  assert float(nearby[0]) > float(at_q[0])


def _history_step(tables, beam_size):
  """A toy next-token model whose log-probabilities depend on the whole prefix (kept in the cache).

  Row r is beam r % beam_size of example r // beam_size; example b uses `tables[b]`, indexed by a
  hash of the prefix. Wrongly reordered caches or mixed examples change the result.
  """

  def step(cache, tokens):
    history = cache['history'].at[:, cache['i']].set(tokens)
    positions = jnp.arange(history.shape[1])
    weights = jnp.where(positions <= cache['i'], 7 ** positions, 0)
    index = jnp.sum(history * weights, axis=1) % tables.shape[1]
    example = jnp.arange(history.shape[0]) // beam_size
    log_probs = jax.nn.log_softmax(tables[example, index])
    return log_probs, {'history': history, 'i': cache['i'] + 1}

  return step


def _brute_force(tables, length, alpha, eos):
  """Every end-terminated sequence of up to `length` tokens, with its score, best first."""
  vocab, results = tables.shape[-1], []
  for table in tables:
    scored = []
    for n in range(length):
      for body in itertools.product([t for t in range(vocab) if t != eos], repeat=n):
        sequence, prefix, logp = body + (eos,), [BOS], 0.0
        for token in sequence:
          index = sum(t * 7 ** j for j, t in enumerate(prefix)) % table.shape[0]
          row = table[index] - np.log(np.exp(table[index]).sum())
          logp += row[token]
          prefix.append(token)
        scored.append((logp / ((5 + len(sequence)) / 6) ** alpha, sequence))
    results.append(sorted(scored, key=lambda s: -s[0]))
  return results


@pytest.mark.parametrize('alpha', [0.6, 2.0])
def test_beam_search_is_exact_when_the_beam_holds_every_prefix(alpha):
  # Vocabulary {end, 3 symbols}, 3 steps: at most 9 live prefixes and 36 candidates per example,
  # so a beam of 18 (36 candidates kept per step) is exhaustive: beam search must return the
  # brute-force ranking of all 13 finished sequences.
  batch, beam, length, eos = 2, 18, 3, 0
  rng = np.random.default_rng(int(alpha * 10))
  tables = (2.0 * rng.standard_normal((batch, 11, 4))).astype(np.float32)
  cache = {'history': np.zeros((batch * beam, length), np.int32), 'i': np.zeros((), np.int32)}
  search = jax.jit(lambda tables, cache: tf.beam_search(
      _history_step(tables, beam), cache, batch_size=batch, beam_size=beam, max_decode_len=length,
      bos_id=BOS, eos_id=eos, pad_id=-1, alpha=alpha))
  sequences, scores = map(np.asarray, search(tables, cache))
  for b, expected in enumerate(_brute_force(tables, length, alpha, eos)):
    assert len(expected) == 13
    np.testing.assert_allclose(scores[b, :13], [s for s, _ in expected], rtol=1e-5)
    for got, (_, sequence) in zip(sequences[b], expected):
      np.testing.assert_array_equal(got, list(sequence) + [-1] * (length - len(sequence)))
    assert np.all(np.isneginf(scores[b, 13:]))  # Fewer finished hypotheses than beams.
  with pytest.raises(ValueError, match='alpha'):
    tf.beam_search(None, None, batch_size=1, beam_size=1, max_decode_len=1, bos_id=0, eos_id=0,
                   pad_id=0, alpha=-1.0)


def test_greedy_search_takes_the_argmax_until_the_end_token():
  batch, length, eos = 3, 6, 0
  tables = np.random.default_rng(0).standard_normal((batch, 11, 4)).astype(np.float32)
  cache = {'history': np.zeros((batch, length), np.int32), 'i': np.zeros((), np.int32)}
  tokens = np.asarray(jax.jit(lambda tables, cache: tf.greedy_search(
      _history_step(tables, 1), cache, batch_size=batch, max_decode_len=length, bos_id=BOS,
      eos_id=eos, pad_id=-1))(tables, cache))
  for b, table in enumerate(tables):
    prefix, expected = [BOS], []
    while len(expected) < length and eos not in expected:
      expected.append(int(np.argmax(table[sum(t * 7 ** j for j, t in enumerate(prefix)) % 11])))
      prefix.append(expected[-1])
    np.testing.assert_array_equal(tokens[b], expected + [-1] * (length - len(expected)))
  assert (tokens == -1).any() and (tokens[:, -1] != -1).any()  # Ended and unended rows occur.


def test_cached_decoding_steps_equal_teacher_forcing(tiny_params):
  model = tf.Transformer(TINY)
  source, target_in = _source_and_target()

  @jax.jit
  def both(params):
    encoded = model.apply({'params': params}, source, method=tf.Transformer.encode)

    def step(cache, tokens):
      logits, variables = model.apply({'params': params, 'cache': cache}, tokens[:, None], encoded,
                                      source, decode=True, method=tf.Transformer.decode,
                                      mutable=['cache'])
      return variables['cache'], logits[:, 0]

    cache = tf.init_cache(model, 2, target_in.shape[1], source.shape[1])
    _, stepped = jax.lax.scan(step, cache, target_in.T)
    return stepped.transpose(1, 0, 2), model.apply({'params': params}, source, target_in)

  stepped, forced = both(tiny_params)
  # Step t saw target tokens 0..t only, so this also shows the teacher-forced decoder is causal.
  chex.assert_trees_all_close(stepped, forced, atol=5e-5, rtol=1e-5)


def test_greedy_and_beam_decoding_agree_with_teacher_forcing(tiny_params):
  model = tf.Transformer(TINY)
  source, _ = _source_and_target(seed=3)
  length, beam, alpha = 7, 3, 0.6

  @jax.jit
  def decode(params):
    greedy = tf.greedy_decode(model, params, source, max_decode_len=length, bos_id=BOS, eos_id=EOS)
    sequences, scores = tf.beam_decode(model, params, source, max_decode_len=length, bos_id=BOS,
                                       eos_id=EOS, beam_size=beam, alpha=alpha)
    # Teacher-forced log-probabilities of every decoded sequence, from full forward passes.
    def log_probs(src, seqs):
      target_in = jnp.concatenate([jnp.full((seqs.shape[0], 1), BOS), seqs[:, :-1]], axis=1)
      return jax.nn.log_softmax(model.apply({'params': params}, src, target_in))
    flat = sequences.reshape(2 * beam, length)
    return (greedy, log_probs(source, greedy), sequences, scores,
            log_probs(np.repeat(source, beam, axis=0), flat))

  greedy, greedy_log_probs, sequences, scores, beam_log_probs = map(np.asarray, decode(tiny_params))

  def ended(seq):
    return list(seq).index(EOS) + 1 if EOS in seq else length

  # Greedy decoding is a fixed point of teacher forcing: each token is the argmax given the others.
  for seq, lp in zip(greedy, greedy_log_probs):
    n = ended(seq)
    np.testing.assert_array_equal(seq[:n], lp[:n].argmax(-1))
    assert np.all(seq[n:] == PAD)
  # Each beam's score is its teacher-forced log-probability over the length penalty, best first.
  for seq, lp, score in zip(sequences.reshape(-1, length), beam_log_probs, scores.reshape(-1)):
    n = ended(seq)
    logp = lp[np.arange(n), seq[:n]].sum()
    np.testing.assert_allclose(score, logp / ((5 + n) / 6) ** alpha, rtol=1e-4)
  assert np.all(np.diff(scores, axis=1) <= 0)
  assert (sequences == EOS).any()  # Some hypotheses end before the maximum length.


def test_matches_pytorch_nn_transformer_layers(tiny_params):
  torch = pytest.importorskip('torch')
  d, heads = TINY.d_model, TINY.num_heads

  def layer(kind):
    cls = {'encoder': torch.nn.TransformerEncoderLayer, 'decoder': torch.nn.TransformerDecoderLayer}
    return cls[kind](d, heads, TINY.d_ff, dropout=0.0, layer_norm_eps=TINY.layer_norm_epsilon,
                     batch_first=True)

  def attention(module, p):
    module.in_proj_weight.copy_(torch.tensor(np.concatenate(
        [np.asarray(p[n]['kernel']).T for n in ('query', 'key', 'value')])))
    module.in_proj_bias.copy_(torch.tensor(np.concatenate(
        [np.asarray(p[n]['bias']) for n in ('query', 'key', 'value')])))
    module.out_proj.weight.copy_(torch.tensor(np.asarray(p['out']['kernel']).T))
    module.out_proj.bias.copy_(torch.tensor(np.asarray(p['out']['bias'])))

  def load(module, p):
    attention(module.self_attn, p['self_attn'])
    if 'multihead_attn' in p:
      attention(module.multihead_attn, p['multihead_attn'])
    for i in (1, 2):
      dense = p['FeedForward_0'][f'linear{i}']
      getattr(module, f'linear{i}').weight.copy_(torch.tensor(np.asarray(dense['kernel']).T))
      getattr(module, f'linear{i}').bias.copy_(torch.tensor(np.asarray(dense['bias'])))
    for name in ('norm1', 'norm2', 'norm3'):
      if name in p:
        getattr(module, name).weight.copy_(torch.tensor(np.asarray(p[name]['scale'])))
        getattr(module, name).bias.copy_(torch.tensor(np.asarray(p[name]['bias'])))

  source, target_in = _source_and_target()
  table = torch.tensor(np.asarray(tiny_params['embed']['embedding']))
  with torch.no_grad():
    encoders = [layer('encoder') for _ in range(TINY.num_encoder_layers)]
    decoders = [layer('decoder') for _ in range(TINY.num_decoder_layers)]
    for i, module in enumerate(encoders):
      load(module, tiny_params[f'encoder_{i}'])
    for i, module in enumerate(decoders):
      load(module, tiny_params[f'decoder_{i}'])

    def embed(tokens):
      positions = np.asarray(tf.sinusoidal_encoding(np.arange(tokens.shape[1]), d))
      return table[torch.tensor(tokens)] * np.sqrt(d) + torch.tensor(positions)

    padding = torch.tensor(source == PAD)
    x = embed(source)
    for module in encoders:
      x = module.eval()(x, src_key_padding_mask=padding)
    y = embed(target_in)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(target_in.shape[1])
    for module in decoders:
      y = module.eval()(y, x, tgt_mask=causal, memory_key_padding_mask=padding)
    expected = (y @ table.T).numpy()
  logits = jax.jit(tf.Transformer(TINY).apply)({'params': tiny_params}, source, target_in)
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
