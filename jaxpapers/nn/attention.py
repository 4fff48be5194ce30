"""Scaled dot-product attention, its memory-efficient chunked form, and multi-head attention.

Plain attention is Eq. 1 of "Attention Is All You Need" (Vaswani et al. 2017, arXiv:1706.03762):
softmax(Q K^T / sqrt(d_k)) V, and `MultiHeadAttention` is its section 3.2.2 (per-head projections
of queries, keys and values, concatenation, output projection).

`chunked_attention` follows "Self-attention Does Not Need O(n^2) Memory" (Rabe & Staats 2021,
arXiv:2112.05682), sections 2-4: queries are processed in chunks (`lax.map`), and for each query
chunk the keys are processed in chunks (`lax.scan`) while a running maximum, a running softmax
denominator and a running weighted sum of values are kept, rescaled whenever the maximum grows
(the numerically stable log-sum-exp trick of section 3). As in the paper's implementation, the
per-(query chunk, key chunk) summary is wrapped in `jax.checkpoint`, so the backward pass
recomputes each chunk's attention weights instead of storing them; each query chunk as a whole is
checkpointed too, so the backward pass only ever holds one query chunk's per-key-chunk
accumulators at a time. Departures from the paper's
listing: the key chunks are folded into a running accumulator (a scan) instead of all chunk
summaries being stacked and combined at the end (same result, fewer live buffers), and lengths
that are not a multiple of the chunk size are padded (padded keys are masked out, padded query rows
dropped).

Conventions shared by both attention functions (the "attention function" contract that
`MultiHeadAttention.attention_fn` expects):

  * `q`: [batch, q_len, heads, head_dim]; `k`, `v`: [batch, k_len, heads, head_dim]; the result has
    the shape of `q`. Queries are scaled by 1/sqrt(head_dim) inside.
  * `mask`: boolean, broadcastable to [batch, heads, q_len, k_len], True = may attend.
    `causal=True` additionally restricts query i to keys j <= i (indices counted from 0 in both;
    the chunked version builds this per chunk, so no [q_len, k_len] mask is ever materialised).
  * A query row with no key to attend to (all masked) returns zeros, and passes zero gradient.
    (The usual "add a large negative number" trick would instead return the mean of all values,
    which depends on the masked-out keys; zeros are easier to reason about and both functions
    agree on them exactly.)
  * Attention dropout (as used by GPT and BERT) drops normalised attention weights with
    probability `dropout_rate` and rescales the survivors by 1/(1 - rate). The chunked version draws
    an independent mask per chunk from `fold_in(dropout_rng, chunk ids)`: same distribution, but
    not the same draw as the plain version for a given key.
  * Softmax statistics are accumulated in float32 whatever the input dtype.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
AttentionFn = Callable[..., Array]


def _check_qkv(q: Array, k: Array, v: Array) -> None:
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError('q, k, v must be [batch, length, heads, head_dim]; got shapes '
                     f'{q.shape}, {k.shape}, {v.shape}')
  if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
    raise ValueError(f'incompatible q, k, v shapes {q.shape}, {k.shape}, {v.shape}')


def _as_4d_mask(mask: Array | None, q_len: int, k_len: int) -> Array | None:
  """Left-pads `mask` to 4 dims and checks it broadcasts to [batch, heads, q_len, k_len]."""
  if mask is None:
    return None
  if mask.ndim > 4:
    raise ValueError(f'mask has {mask.ndim} dims; expected at most 4')
  mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape).astype(bool)
  if mask.shape[2] not in (1, q_len) or mask.shape[3] not in (1, k_len):
    raise ValueError(f'mask of shape {mask.shape} does not broadcast to q_len={q_len}, '
                     f'k_len={k_len}')
  return mask


def _summarize_chunk(q: Array, k: Array, v: Array, valid: Array | None,
                     dropout_rate: float, dropout_rng: Array | None):
  """Unnormalised attention of one query chunk over one key chunk.

  Returns (numerator [b, h, q, d], denominator [b, h, q], max [b, h, q]) with
  numerator = sum_j exp(s_j - max) v_j and denominator = sum_j exp(s_j - max), where `max` is the
  row's largest unmasked score (-inf for a fully masked row, whose sums are then 0).
  """
  scores = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32)
  if valid is not None:
    scores = jnp.where(valid, scores, -jnp.inf)
  # The shift cancels between numerator and denominator, so it carries no gradient.
  row_max = lax.stop_gradient(jnp.max(scores, axis=-1))
  shift = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
  weights = jnp.exp(scores - shift[..., None])  # exp(-inf) = 0 for masked scores.
  denominator = jnp.sum(weights, axis=-1)
  if dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  numerator = jnp.einsum('bhqk,bkhd->bhqd', weights.astype(v.dtype), v,
                         preferred_element_type=jnp.float32)
  return numerator, denominator, row_max


def _normalize(numerator: Array, denominator: Array) -> Array:
  """numerator / denominator, with 0 for rows that attended to nothing."""
  safe = jnp.where(denominator > 0, denominator, 1.0)
  return numerator / safe[..., None]


def _check_dropout(dropout_rate: float, dropout_rng: Array | None) -> None:
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f'dropout_rate must be in [0, 1); got {dropout_rate}')
  if dropout_rate > 0.0 and dropout_rng is None:
    raise ValueError('dropout_rate > 0 needs a dropout_rng')


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array | None = None, *,
                          causal: bool = False, dropout_rate: float = 0.0,
                          dropout_rng: Array | None = None) -> Array:
  """softmax(q k^T / sqrt(d)) v over the whole [q_len, k_len] score matrix at once.

  See the module docstring for shapes, masking, fully masked rows and dropout.
  """
  _check_qkv(q, k, v)
  _check_dropout(dropout_rate, dropout_rng)
  q_len, k_len = q.shape[1], k.shape[1]
  valid = _as_4d_mask(mask, q_len, k_len)
  if causal:
    tril = jnp.arange(k_len)[None, :] <= jnp.arange(q_len)[:, None]
    valid = tril if valid is None else valid & tril
  q = q * (q.shape[-1] ** -0.5)
  numerator, denominator, _ = _summarize_chunk(q, k, v, valid, dropout_rate, dropout_rng)
  return _normalize(numerator, denominator).transpose(0, 2, 1, 3).astype(q.dtype)


def _pad_axis1(x: Array, length: int) -> Array:
  return jnp.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def chunked_attention(q: Array, k: Array, v: Array, mask: Array | None = None, *,
                      causal: bool = False, query_chunk_size: int = 1024,
                      key_chunk_size: int = 4096, dropout_rate: float = 0.0,
                      dropout_rng: Array | None = None) -> Array:
  """Attention in O(query_chunk * key_chunk) working memory (Rabe & Staats 2021).

  Same result and gradients as `dot_product_attention` (to float rounding). Chunk sizes larger than
  the sequence are clipped to it; lengths need not be multiples of the chunk sizes. A full
  [q_len, k_len] `mask` is sliced per chunk; prefer `causal=True` and [batch, 1, 1, k_len] padding
  masks, which stay O(length). The paper's defaults (1024 queries, 4096 keys per chunk) are used
  unless given.
  """
  _check_qkv(q, k, v)
  _check_dropout(dropout_rate, dropout_rng)
  if query_chunk_size < 1 or key_chunk_size < 1:
    raise ValueError('chunk sizes must be positive')
  batch, q_len, heads, head_dim = q.shape
  k_len = k.shape[1]
  q_chunk, k_chunk = min(query_chunk_size, q_len), min(key_chunk_size, k_len)
  num_q_chunks, num_k_chunks = -(-q_len // q_chunk), -(-k_len // k_chunk)
  q = _pad_axis1(q * (head_dim ** -0.5), num_q_chunks * q_chunk)
  k = _pad_axis1(k, num_k_chunks * k_chunk)
  v = _pad_axis1(v, num_k_chunks * k_chunk)

  mask = _as_4d_mask(mask, q_len, k_len)
  slice_q = mask is not None and mask.shape[2] > 1
  slice_k = mask is not None and mask.shape[3] > 1
  if slice_q or slice_k:
    pad_q = num_q_chunks * q_chunk - q_len if slice_q else 0
    pad_k = num_k_chunks * k_chunk - k_len if slice_k else 0
    mask = jnp.pad(mask, [(0, 0), (0, 0), (0, pad_q), (0, pad_k)])  # Pads with False.
  keys_padded = num_k_chunks * k_chunk != k_len

  def chunk_valid(q_start: Array, k_start: Array) -> Array | None:
    """The [.., q_chunk, k_chunk] validity of one chunk pair, or None when all keys are valid."""
    q_pos = q_start + jnp.arange(q_chunk)
    k_pos = k_start + jnp.arange(k_chunk)
    valid = None
    if mask is not None:
      valid = mask
      if slice_q:
        valid = lax.dynamic_slice_in_dim(valid, q_start, q_chunk, axis=2)
      if slice_k:
        valid = lax.dynamic_slice_in_dim(valid, k_start, k_chunk, axis=3)
    extras = []
    if causal:
      extras.append(k_pos[None, :] <= q_pos[:, None])
    if keys_padded:
      extras.append((k_pos < k_len)[None, :])
    for extra in extras:
      valid = extra if valid is None else valid & extra
    return valid

  @functools.partial(jax.checkpoint, prevent_cse=False)
  def summarize(q_c, k_c, v_c, q_index, k_index):
    rng = None
    if dropout_rate > 0.0:
      rng = jax.random.fold_in(jax.random.fold_in(dropout_rng, q_index), k_index)
    valid = chunk_valid(q_index * q_chunk, k_index * k_chunk)
    return _summarize_chunk(q_c, k_c, v_c, valid, dropout_rate, rng)

  @functools.partial(jax.checkpoint, prevent_cse=False)
  def attend_query_chunk(q_index):
    q_c = lax.dynamic_slice_in_dim(q, q_index * q_chunk, q_chunk, axis=1)

    def step(carry, k_index):
      numerator, denominator, running_max = carry
      k_c = lax.dynamic_slice_in_dim(k, k_index * k_chunk, k_chunk, axis=1)
      v_c = lax.dynamic_slice_in_dim(v, k_index * k_chunk, k_chunk, axis=1)
      chunk_num, chunk_den, chunk_max = summarize(q_c, k_c, v_c, q_index, k_index)
      # Rescale both the accumulator and the new chunk to the larger of the two maxima.
      new_max = jnp.maximum(running_max, chunk_max)
      shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
      old_scale, chunk_scale = jnp.exp(running_max - shift), jnp.exp(chunk_max - shift)
      numerator = numerator * old_scale[..., None] + chunk_num * chunk_scale[..., None]
      denominator = denominator * old_scale + chunk_den * chunk_scale
      return (numerator, denominator, new_max), None

    stats_shape = (batch, heads, q_chunk)
    init = (jnp.zeros(stats_shape + (head_dim,), jnp.float32), jnp.zeros(stats_shape, jnp.float32),
            jnp.full(stats_shape, -jnp.inf, jnp.float32))
    (numerator, denominator, _), _ = lax.scan(step, init, jnp.arange(num_k_chunks))
    return _normalize(numerator, denominator)  # [batch, heads, q_chunk, head_dim]

  out = lax.map(attend_query_chunk, jnp.arange(num_q_chunks))  # [n_q, batch, heads, q_chunk, d]
  out = out.transpose(1, 0, 3, 2, 4).reshape(batch, num_q_chunks * q_chunk, heads, head_dim)
  return out[:, :q_len].astype(q.dtype)


def decode_position(module: nn.Module, length: int) -> Array | int:
  """For decoding with a KV cache: the position of the first of `length` new tokens.

  The count lives in `module`'s 'cache' collection (`position`) and advances by `length` on each
  call; 0 on the call that creates the cache. Call it from the module's compact `__call__`.
  """
  is_initialized = module.has_variable('cache', 'position')
  position = module.variable('cache', 'position', lambda: jnp.zeros((), jnp.int32))
  if not is_initialized:
    return 0
  start = position.value
  position.value = start + length
  return start


class MultiHeadAttention(nn.Module):
  """Multi-head attention (Vaswani et al. 2017, section 3.2.2) with an optional KV cache.

  Parameters: `query`, `key`, `value` Dense layers [in, qkv_features] (heads are consecutive
  slices of the features, as in GPT-2's `c_attn` and BERT's `query/key/value`), and `out`
  [qkv_features, out_features]. Kernels are [in, out] (PyTorch Linear weights are [out, in]).

  Attributes:
    num_heads: number of heads; `qkv_features` must be divisible by it.
    qkv_features: total query/key/value width (default: the query input's width).
    out_features: output width (default: the query input's width).
    dropout_rate: dropout on the attention weights, active when `train=True`.
    attention_fn: a function with the contract of `dot_product_attention` (e.g. a
      `functools.partial` of `chunked_attention` with chunk sizes).
    kernel_init, out_kernel_init, bias_init: initialisers (`out_kernel_init` defaults to
      `kernel_init`; GPT-2 scales the output projection's separately).

  Call: `mha(inputs_q, inputs_kv=None, *, inputs_v=None, mask=None, causal=False, decode=False,
  train=False)`. `inputs_kv=None` means self-attention. `inputs_v` gives the values a different
  input from the keys (DETR adds positional encodings to queries and keys only); by default the
  values are projected from `inputs_kv`. `mask` follows the attention-function contract.

  Autoregressive decoding (`decode=True`, self-attention only, always causal): the keys and values
  of every position seen so far live in the 'cache' collection (`cached_key`, `cached_value`:
  [batch, max_length, heads, head_dim]; `cache_index`: the number of positions filled). The cache
  is created, zero-filled, by `init` with `decode=True` on inputs of the full [batch, max_length]
  size (that call itself behaves as plain causal attention). Each later `apply(...,
  decode=True, mutable=['cache'])` appends its inputs (one token, or several such as a prompt) and
  lets them attend to every cached position up to their own. Writing past `max_length` is not
  checked at run time (the write would be clipped by `dynamic_update_slice`); callers size the
  cache.
  """
  num_heads: int
  qkv_features: int | None = None
  out_features: int | None = None
  dropout_rate: float = 0.0
  attention_fn: AttentionFn = dot_product_attention
  kernel_init: Callable[..., Array] = nn.linear.default_kernel_init
  out_kernel_init: Callable[..., Array] | None = None
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array | None = None, *,
               inputs_v: Array | None = None, mask: Array | None = None, causal: bool = False,
               decode: bool = False, train: bool = False) -> Array:
    if decode and inputs_kv is not None:
      raise ValueError('decode=True is for causal self-attention; pass inputs_kv=None')
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    inputs_v = inputs_kv if inputs_v is None else inputs_v
    features = self.qkv_features or inputs_q.shape[-1]
    if features % self.num_heads:
      raise ValueError(f'qkv_features={features} is not divisible by num_heads={self.num_heads}')
    head_dim = features // self.num_heads
    dense = functools.partial(nn.Dense, features, use_bias=self.use_bias, dtype=self.dtype,
                              param_dtype=self.param_dtype, kernel_init=self.kernel_init,
                              bias_init=self.bias_init)

    def heads(x: Array) -> Array:
      return x.reshape(x.shape[:-1] + (self.num_heads, head_dim))

    q = heads(dense(name='query')(inputs_q))
    k = heads(dense(name='key')(inputs_kv))
    v = heads(dense(name='value')(inputs_v))

    if decode:
      is_initialized = self.has_variable('cache', 'cached_key')
      cached_key = self.variable('cache', 'cached_key', jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable('cache', 'cached_value', jnp.zeros, v.shape, v.dtype)
      cache_index = self.variable('cache', 'cache_index', lambda: jnp.zeros((), jnp.int32))
      causal = True
      if is_initialized:
        index, length = cache_index.value, q.shape[1]
        max_length = cached_key.value.shape[1]
        cached_key.value = lax.dynamic_update_slice_in_dim(cached_key.value, k, index, axis=1)
        cached_value.value = lax.dynamic_update_slice_in_dim(cached_value.value, v, index, axis=1)
        cache_index.value = index + length
        k, v = cached_key.value, cached_value.value
        # Query i sits at position index + i and sees cached positions up to its own; this also
        # hides the not yet written (zero) part of the cache.
        seen = jnp.arange(max_length)[None, :] <= (index + jnp.arange(length))[:, None]
        mask = seen if mask is None else jnp.logical_and(mask, seen)
        causal = False  # Expressed by `seen`, which accounts for the offset.

    dropout_rng = None
    if train and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng('dropout')
    out = self.attention_fn(q, k, v, mask, causal=causal,
                            dropout_rate=self.dropout_rate if train else 0.0,
                            dropout_rng=dropout_rng)
    out = out.reshape(out.shape[:-2] + (features,))
    return nn.Dense(self.out_features or inputs_q.shape[-1], use_bias=self.use_bias,
                    dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=self.out_kernel_init or self.kernel_init,
                    bias_init=self.bias_init, name='out')(out)
