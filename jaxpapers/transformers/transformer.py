"""The Transformer: the encoder-decoder of "Attention Is All You Need", greedy and beam decoding.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin 2017, arXiv:1706.03762:
  * section 3.1 and Figure 1: N encoder layers (self-attention, feed-forward) and N decoder layers
    (masked self-attention, attention over the encoder output, feed-forward); every sub-layer is
    wrapped as LayerNorm(x + Dropout(Sublayer(x))) (post-norm, dropout of section 5.4);
  * 3.2: scaled dot-product and multi-head attention (`jaxpapers.nn.attention`);
  * 3.3, eq. 2: FFN(x) = max(0, x W1 + b1) W2 + b2;
  * 3.4: one embedding matrix shared by the source embedding, the target embedding and the
    pre-softmax linear layer (logits = y E^T, no bias), the embeddings multiplied by sqrt(d_model);
  * 3.5: sinusoidal encodings PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same),
    added to the embeddings, with dropout on the sums (5.4);
  * 5.3, eq. 3: Adam (0.9, 0.98, 1e-9) with lrate = d^-0.5 min(step^-0.5, step warmup^-1.5): the
    'warmup_rsqrt' schedule of `jaxpapers.train.optim` with `learning_rate = d_model ** -0.5`;
  * 5.4: label smoothing eps_ls = 0.1 (`label_smoothed_cross_entropy`);
  * 6.1: beam search with beam size 4 and length penalty alpha = 0.6 (`beam_search`); the penalty
    is GNMT's (Wu et al. 2016, arXiv:1609.08144, the paper's ref. 38): score = log P(Y) / lp(Y),
    lp(Y) = ((5 + |Y|) / 6)^alpha, |Y| counting the end token; the search stops early once no live
    hypothesis can beat the worst of the beam_size finished ones.
  * Table 3: base (N 6, d 512, d_ff 2048, h 8, P_drop 0.1) and big (N 6, d 1024, d_ff 4096, h 16,
    P_drop 0.3, the EN-DE setting).

Choices the paper leaves open, and departures:
  * Initialisation (not given in the paper): embeddings N(0, d^-1/2), as in tensor2tensor, so the
    scaled embeddings have unit variance like the encodings; Dense kernels Xavier-uniform, as in
    tensor2tensor and fairseq. LayerNorm epsilon 1e-6 (tensor2tensor's; PyTorch defaults to 1e-5).
  * Label smoothing spreads eps uniformly over all V classes (Szegedy et al. 2016's form, which
    the paper cites); padding positions carry no loss.
  * The paper's maximum output length "input length + 50" is the caller's `max_decode_len`.
  * Decoding caches the decoder self-attention keys and values (the 'cache' collection of
    `MultiHeadAttention`), but recomputes the projections of the encoder output for the
    cross-attention at every step (d^2 x source length per layer and step; simpler, same result).

Parameter names follow PyTorch's `nn.Transformer` layers (`self_attn`, `multihead_attn`, `linear1`,
`linear2`, `norm1..3`), with attention projections `query/key/value/out` as elsewhere here.

Parameter count (V shared vocabulary, d width, f = d_ff, N layers in each stack):
  V d + N (4 d^2 + 2 d f + f + 9 d) + N (8 d^2 + 2 d f + f + 15 d)
which is PyTorch's `nn.Transformer(d, h, N, N, f)` count (44,140,544 for base) less its two final
LayerNorms (4 d), plus the embedding. The paper's vocabulary for its base results (EN-DE) is "a
shared source-target vocabulary of about 37000 tokens" (section 5.1); with V = 37,000:
  transformer_base   63,082,496   (Table 3: 65M)
  transformer_big   214,245,376   (Table 3: 213M)
No single V reproduces both of Table 3's figures (65M needs V ~ 40,700, 213M needs V ~ 35,800), so
the presets keep the stated 37,000 and the closed form above is the reference.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxpapers import zoo
from jaxpapers.nn.attention import (AttentionFn, MultiHeadAttention, decode_position,
                                    dot_product_attention)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Sizes and regularisation (defaults: the base model with a 37,000-token shared vocabulary)."""
  vocab_size: int = 37000
  d_model: int = 512
  num_heads: int = 8
  d_ff: int = 2048
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  dropout_rate: float = 0.1  # P_drop: sub-layer outputs and embedding sums.
  layer_norm_epsilon: float = 1e-6
  pad_id: int = 0  # Source positions holding it are never attended to.
  attention_fn: AttentionFn = dot_product_attention


TRANSFORMER_BASE = TransformerConfig()
TRANSFORMER_BIG = TransformerConfig(d_model=1024, num_heads=16, d_ff=4096, dropout_rate=0.3)


def sinusoidal_encoding(positions: Array, d_model: int) -> Array:
  """Section 3.5: [..., L] integer positions -> [..., L, d_model]; sin on even, cos on odd units."""
  if d_model % 2:
    raise ValueError(f'd_model must be even for sinusoidal encodings; got {d_model}')
  inverse_wavelength = 10000.0 ** (-jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model)
  angles = positions[..., None].astype(jnp.float32) * inverse_wavelength
  interleaved = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return interleaved.reshape(angles.shape[:-1] + (d_model,))


class AddPositions(nn.Module):
  """x + PE(positions); with `decode=True` the 'cache' collection counts the positions seen."""

  @nn.compact
  def __call__(self, x: Array, *, decode: bool = False) -> Array:
    start = decode_position(self, x.shape[1]) if decode else 0
    return x + sinusoidal_encoding(start + jnp.arange(x.shape[1]), x.shape[-1]).astype(x.dtype)


def _dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, kernel_init=nn.initializers.xavier_uniform(), name=name)


class FeedForward(nn.Module):
  """Eq. 2: linear2(relu(linear1(x)))."""
  d_ff: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return _dense(x.shape[-1], 'linear2')(nn.relu(_dense(self.d_ff, 'linear1')(x)))


class EncoderLayer(nn.Module):
  """x = LN(x + Dropout(SelfAttention(x))); x = LN(x + Dropout(FFN(x)))."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, train: bool = False) -> Array:
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=not train)
    attended = MultiHeadAttention(c.num_heads, attention_fn=c.attention_fn,
                                  kernel_init=nn.initializers.xavier_uniform(),
                                  name='self_attn')(x, mask=mask, train=train)
    x = nn.LayerNorm(c.layer_norm_epsilon, name='norm1')(x + drop(attended))
    return nn.LayerNorm(c.layer_norm_epsilon, name='norm2')(x + drop(FeedForward(c.d_ff)(x)))


class DecoderLayer(nn.Module):
  """Masked self-attention, attention over the encoder output, FFN; each post-norm residual."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, y: Array, encoded: Array, cross_mask: Array, *, decode: bool = False,
               train: bool = False) -> Array:
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=not train)
    attention = functools.partial(MultiHeadAttention, c.num_heads, attention_fn=c.attention_fn,
                                  kernel_init=nn.initializers.xavier_uniform())
    attended = attention(name='self_attn')(y, causal=True, decode=decode, train=train)
    y = nn.LayerNorm(c.layer_norm_epsilon, name='norm1')(y + drop(attended))
    attended = attention(name='multihead_attn')(y, encoded, mask=cross_mask, train=train)
    y = nn.LayerNorm(c.layer_norm_epsilon, name='norm2')(y + drop(attended))
    return nn.LayerNorm(c.layer_norm_epsilon, name='norm3')(y + drop(FeedForward(c.d_ff)(y)))


class Transformer(nn.Module):
  """`model(source [B, S], target_in [B, T]) -> logits [B, T, V]` (teacher forcing).

  `target_in` is the target shifted right behind a start token. Source positions holding
  `config.pad_id` are masked out of every attention over the source. `encode` and `decode` are
  the two halves; `decode(..., decode=True)` runs one step at a time against the KV cache (see
  `init_cache`).
  """
  config: TransformerConfig = TRANSFORMER_BASE

  def setup(self):
    c = self.config
    self.embed = nn.Embed(c.vocab_size, c.d_model,
                          embedding_init=nn.initializers.normal(c.d_model ** -0.5))
    self.positions = AddPositions()
    self.dropout = nn.Dropout(c.dropout_rate)
    self.encoder = [EncoderLayer(c) for _ in range(c.num_encoder_layers)]
    self.decoder = [DecoderLayer(c) for _ in range(c.num_decoder_layers)]

  def _embed(self, tokens: Array, *, decode: bool, train: bool) -> Array:
    x = self.embed(tokens) * math.sqrt(self.config.d_model)
    return self.dropout(self.positions(x, decode=decode), deterministic=not train)

  def encode(self, source: Array, *, train: bool = False) -> Array:
    """[B, S] tokens -> [B, S, d] encoder output."""
    mask = (source != self.config.pad_id)[:, None, None, :]
    x = self._embed(source, decode=False, train=train)
    for layer in self.encoder:
      x = layer(x, mask, train=train)
    return x

  def decode(self, target_in: Array, encoded: Array, source: Array, *, decode: bool = False,
             train: bool = False) -> Array:
    """Logits [B, T, V] of the next tokens given `target_in` [B, T] and the encoded `source`."""
    cross_mask = (source != self.config.pad_id)[:, None, None, :]
    y = self._embed(target_in, decode=decode, train=train)
    for layer in self.decoder:
      y = layer(y, encoded, cross_mask, decode=decode, train=train)
    return self.embed.attend(y)  # The pre-softmax linear layer is the shared embedding.

  def __call__(self, source: Array, target_in: Array, *, train: bool = False) -> Array:
    return self.decode(target_in, self.encode(source, train=train), source, train=train)


def label_smoothed_cross_entropy(logits: Array, targets: Array, smoothing: float = 0.1) -> Array:
  """Section 5.4: cross-entropy against (1 - eps) one_hot(target) + eps / V, per position."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return (1.0 - smoothing) * nll - smoothing * jnp.mean(log_probs, axis=-1)


def length_penalty(length: Array | int, alpha: float) -> Array:
  """GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def init_cache(model: Transformer, batch_size: int, max_decode_len: int, source_len: int) -> Any:
  """An empty decoding cache for `batch_size` targets of up to `max_decode_len` tokens."""
  d = model.config.d_model

  def init():
    return model.init(jax.random.key(0), jnp.zeros((batch_size, max_decode_len), jnp.int32),
                      jnp.zeros((batch_size, source_len, d)),
                      jnp.zeros((batch_size, source_len), jnp.int32), decode=True,
                      method=Transformer.decode)

  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(init)['cache'])


def _step_fn(model: Transformer, params: Any, encoded: Array, source: Array):
  """(cache, tokens [N]) -> (log-probabilities [N, V] of the next token, cache)."""

  def step(cache, tokens):
    logits, variables = model.apply({'params': params, 'cache': cache}, tokens[:, None], encoded,
                                    source, decode=True, method=Transformer.decode,
                                    mutable=['cache'])
    return jax.nn.log_softmax(logits[:, 0].astype(jnp.float32)), variables['cache']

  return step


def greedy_search(step_fn: Callable[[Any, Array], tuple[Array, Any]], cache: Any, *,
                  batch_size: int, max_decode_len: int, bos_id: int, eos_id: int,
                  pad_id: int) -> Array:
  """The most probable next token at every step, as one `lax.while_loop`; a pure function.

  `step_fn(cache, tokens [batch_size]) -> (log_probs or logits [batch_size, V], cache)`. The loop
  stops once every sequence has produced `eos_id`, or after `max_decode_len` tokens. Returns
  [batch_size, max_decode_len] tokens, `pad_id` after the end token.
  """

  def body(carry):
    i, cache, last, done, tokens = carry
    scores, cache = step_fn(cache, last)
    token = jnp.where(done, pad_id, jnp.argmax(scores, axis=-1)).astype(jnp.int32)
    tokens = lax.dynamic_update_slice_in_dim(tokens, token[:, None], i, axis=1)
    return i + 1, cache, token, done | (token == eos_id), tokens

  def cond(carry):
    i, _, _, done, _ = carry
    return (i < max_decode_len) & ~jnp.all(done)

  init = (jnp.zeros((), jnp.int32), cache, jnp.full((batch_size,), bos_id, jnp.int32),
          jnp.zeros((batch_size,), bool), jnp.full((batch_size, max_decode_len), pad_id, jnp.int32))
  return lax.while_loop(cond, body, init)[-1]


def beam_search(step_fn: Callable[[Any, Array], tuple[Array, Any]], cache: Any, *, batch_size: int,
                beam_size: int, max_decode_len: int, bos_id: int, eos_id: int, pad_id: int,
                alpha: float) -> tuple[Array, Array]:
  """Beam search with GNMT's length penalty, as one `lax.while_loop`; a pure function.

  `step_fn(cache, tokens [batch_size * beam_size]) -> (log_probs [batch_size * beam_size, V],
  cache)` gives each hypothesis' next-token log-probabilities (row b * beam_size + k is beam k of
  example b). Every cache leaf with a leading axis of that size is reordered with the beams; other
  leaves (step counters) are shared.

  At each step the 2 * beam_size best extensions of the live hypotheses are taken (so that beam_size
  of them can still be live when some end); those ending with `eos_id` compete, scored
  log P / lp, for the beam_size finished slots, the others are the new live hypotheses. The loop
  ends after `max_decode_len` tokens, or once the best live log-probability divided by the largest
  penalty lp(max_decode_len) (an upper bound on any score it can still reach, as alpha >= 0) falls
  below the worst of beam_size finished scores, so stopping early never changes the result.

  Returns (sequences [batch_size, beam_size, max_decode_len], scores [batch_size, beam_size]), best
  first, `pad_id` after the end token. An example with no finished hypothesis returns its live ones,
  scored with lp(max_decode_len).
  """
  if alpha < 0:
    raise ValueError(f'alpha must be >= 0 for the early-stopping bound; got {alpha}')
  b, k, length = batch_size, beam_size, max_decode_len
  neg_inf = jnp.array(-jnp.inf, jnp.float32)

  def take(x, indices):  # x [B, N, ...], indices [B, M] -> [B, M, ...]
    return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), axis=1)

  def body(state):
    i, cache, live_seqs, live_logp, last, fin_seqs, fin_scores, fin_flags = state
    log_probs, cache = step_fn(cache, last.reshape(b * k))
    vocab = log_probs.shape[-1]
    candidates = (live_logp[:, :, None] + log_probs.reshape(b, k, vocab)).reshape(b, k * vocab)
    top_logp, top_index = lax.top_k(candidates, 2 * k)
    origin, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    seqs = take(live_seqs, origin)
    seqs = lax.dynamic_update_slice_in_dim(seqs, token[:, :, None], i, axis=2)
    ends = (token == eos_id) & jnp.isfinite(top_logp)

    live_logp, pick = lax.top_k(jnp.where(ends, neg_inf, top_logp), k)
    live_seqs, last = take(seqs, pick), take(token, pick)
    rows = (jnp.arange(b)[:, None] * k + take(origin, pick)).reshape(b * k)
    cache = jax.tree.map(lambda x: x[rows] if x.ndim and x.shape[0] == b * k else x, cache)

    scores = jnp.concatenate([fin_scores, jnp.where(ends, top_logp / length_penalty(i + 1, alpha),
                                                    neg_inf)], axis=1)
    fin_scores, pick = lax.top_k(scores, k)
    fin_seqs = take(jnp.concatenate([fin_seqs, seqs], axis=1), pick)
    fin_flags = take(jnp.concatenate([fin_flags, ends], axis=1), pick)
    return i + 1, cache, live_seqs, live_logp, last, fin_seqs, fin_scores, fin_flags

  def cond(state):
    i, _, _, live_logp, _, _, fin_scores, fin_flags = state
    best_live = live_logp[:, 0] / length_penalty(length, alpha)
    worst_finished = jnp.where(jnp.all(fin_flags, axis=1), fin_scores[:, -1], neg_inf)
    done = (worst_finished > best_live) | ~jnp.isfinite(best_live)
    return (i < length) & ~jnp.all(done)

  # Only beam 0 is live at first: the beams would otherwise be beam_size copies of one hypothesis.
  live_logp = jnp.where(jnp.arange(k) == 0, 0.0, neg_inf) * jnp.ones((b, 1))
  empty = jnp.full((b, k, length), pad_id, jnp.int32)
  state = (jnp.zeros((), jnp.int32), cache, empty, live_logp, jnp.full((b, k), bos_id, jnp.int32),
           empty, jnp.full((b, k), neg_inf), jnp.zeros((b, k), bool))
  _, _, live_seqs, live_logp, _, fin_seqs, fin_scores, fin_flags = lax.while_loop(cond, body, state)
  any_finished = jnp.any(fin_flags, axis=1)
  sequences = jnp.where(any_finished[:, None, None], fin_seqs, live_seqs)
  scores = jnp.where(any_finished[:, None], fin_scores, live_logp / length_penalty(length, alpha))
  return sequences, scores


@functools.partial(jax.jit, static_argnames=('model', 'max_decode_len', 'bos_id', 'eos_id'))
def greedy_decode(model: Transformer, params: Any, source: Array, *, max_decode_len: int,
                  bos_id: int, eos_id: int) -> Array:
  """Greedy decoding over the model as one compiled program: [B, max_decode_len] tokens.

  The source is encoded once, then one token is decoded per step against the KV cache until every
  sequence has ended (see `greedy_search`).
  """
  batch, source_len = source.shape
  encoded = model.apply({'params': params}, source, method=Transformer.encode)
  return greedy_search(_step_fn(model, params, encoded, source),
                       init_cache(model, batch, max_decode_len, source_len), batch_size=batch,
                       max_decode_len=max_decode_len, bos_id=bos_id, eos_id=eos_id,
                       pad_id=model.config.pad_id)


@functools.partial(jax.jit, static_argnames=('model', 'max_decode_len', 'bos_id', 'eos_id',
                                             'beam_size', 'alpha'))
def beam_decode(model: Transformer, params: Any, source: Array, *, max_decode_len: int,
                bos_id: int, eos_id: int, beam_size: int = 4, alpha: float = 0.6
                ) -> tuple[Array, Array]:
  """Section 6.1's beam search over the model (one compiled program; see `beam_search`)."""
  batch, source_len = source.shape
  encoded = model.apply({'params': params}, source, method=Transformer.encode)
  # Beam k of example b is row b * beam_size + k.
  encoded, source = (jnp.repeat(x, beam_size, axis=0) for x in (encoded, source))
  return beam_search(_step_fn(model, params, encoded, source),
                     init_cache(model, batch * beam_size, max_decode_len, source_len),
                     batch_size=batch, beam_size=beam_size, max_decode_len=max_decode_len,
                     bos_id=bos_id, eos_id=eos_id, pad_id=model.config.pad_id, alpha=alpha)


def _inputs(length: int = 8):
  return lambda: (jax.ShapeDtypeStruct((1, length), jnp.int32),
                  jax.ShapeDtypeStruct((1, length), jnp.int32))


_PAPER = 'Attention Is All You Need (Vaswani et al. 2017, arXiv:1706.03762)'
for _name, _config, _count in (('transformer_base', TRANSFORMER_BASE, 63_082_496),
                               ('transformer_big', TRANSFORMER_BIG, 214_245_376)):
  zoo.register(_name, functools.partial(Transformer, _config), inputs=_inputs(),
               apply_kwargs={'train': False}, paper=_PAPER, reference_params=_count,
               reference_source='closed form with a 37,000-token shared vocabulary (section 5.1; '
                                'Table 3 rounds to 65M / 213M; see module docstring)')

# The synthetic transduction runs (experiments/configs/transformer.py): the base architecture
# scaled to a CPU, 2 + 2 layers of width 128 (base: 6 + 6 of 512); the experiment sets the
# vocabulary of its task (10 symbols and 3 specials by default). `_tiny` is for tests.
_TASKS = 'project preset for the synthetic copy/reverse/sort tasks'
zoo.register('transformer_small', functools.partial(Transformer, TransformerConfig(
    vocab_size=13, d_model=128, num_heads=4, d_ff=512, num_encoder_layers=2,
    num_decoder_layers=2, dropout_rate=0.1)), inputs=_inputs(), apply_kwargs={'train': False},
             paper=_PAPER, reference_params=None, reference_source=_TASKS)
zoo.register('transformer_tiny', functools.partial(Transformer, TransformerConfig(
    vocab_size=7, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1, num_decoder_layers=1,
    dropout_rate=0.0)), inputs=_inputs(), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source=_TASKS + ' (tests)')
