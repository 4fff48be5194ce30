"""GPT and GPT-2: decoder-only transformer language models, with KV-cached generation.

GPT: "Improving Language Understanding by Generative Pre-Training" (Radford, Narasimhan, Salimans,
Sutskever 2018; OpenAI report, no arXiv id), section 3.1 (Eq. 2: h_0 = U W_e + W_p, masked
self-attention blocks, P(u) = softmax(h_n W_e^T)) and section 4.1 "Model specifications": 12 layers,
768-wide states, 12 heads, 3072-wide feed-forward, learned position embeddings, GELU, dropout 0.1 on
residuals, embeddings and attention, weights from N(0, 0.02). Each sub-layer is post-norm, as in
the original Transformer: x = LN(x + Sublayer(x)).

GPT-2: "Language Models are Unsupervised Multitask Learners" (Radford, Wu, Child, Luan, Amodei,
Sutskever 2019; OpenAI report), section 2.3: the same model with layer normalisation moved to the
input of each sub-block (pre-norm, x = x + Sublayer(LN(x))), an extra LayerNorm after the last
block, residual-projection weights initialised with an extra factor 1/sqrt(N) for N residual layers
(counted, as Hugging Face does, as N = 2 per block: attention and MLP), a 50,257-token
vocabulary and a 1024-token context. Table 2's four sizes are the presets below.

Both tie the output layer to the token embedding (logits = h W_e^T, no bias). GELU is the tanh
approximation, as in both papers' released code.

Parameter names follow Hugging Face's `GPT2LMHeadModel` / `OpenAIGPTLMHeadModel` so that a
state-dict converter is a renaming: `wte` (`tokens_embed` in HF's GPT), `wpe` (`positions_embed`),
`h_{i}` with `ln_1`, `attn`, `ln_2`, `mlp/{c_fc,c_proj}`, and GPT-2's `ln_f`. HF's fused
`attn.c_attn` [d, 3d] splits column-wise into our `attn/{query,key,value}/kernel` and
`attn.c_proj` is `attn/out`. HF's
`Conv1D` stores weights as [in, out] like Flax's Dense, so no transposes are needed. In GPT,
`ln_1` sits after attention and `ln_2` after the MLP; in GPT-2 they sit before them (as in HF).

Parameter counts (reference: the Hugging Face model cards' configs, counted with HF's module
definitions, tied embeddings counted once; V = vocab, P = positions, d = width, L = layers):
  V d + P d + L (12 d^2 + 13 d) [+ 2 d for GPT-2's ln_f]
  gpt1 (V 40478, P 512, d 768, L 12)            116,534,784  (usually quoted as 117M)
  gpt2_small (V 50257, P 1024, d 768, L 12)     124,439,808  (paper Table 2: 117M)
  gpt2_medium (d 1024, L 24)                    354,823,168  (paper: 345M)
  gpt2_large (d 1280, L 36)                     774,030,080  (paper: 762M)
  gpt2_xl (d 1600, L 48)                      1,557,611,200  (paper: 1542M)
GPT-2's Table 2 figures are wrong: the openai/gpt-2 README says "our original parameter counts were
wrong due to an error (in our previous blog posts and paper)" and names the models 124M, 355M, 774M
and 1558M, which the exact counts above match. GPT's paper gives no count; its usual "117M" is the
count above rounded.

Generation (`generate`) prefills the prompt in one cached forward pass, then decodes one token per
step under `lax.scan`, all inside one `jax.jit` program. Sampling (`sample_logits`) is a pure
function of logits and a key: temperature, then top-k, then top-p (nucleus sampling, Holtzman et al.
2019, arXiv:1904.09751), the order Hugging Face uses; temperature 0 is greedy decoding.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxpapers import zoo
from jaxpapers.nn.attention import (AttentionFn, MultiHeadAttention, decode_position,
                                    dot_product_attention)

Array = jax.Array


class MLP(nn.Module):
  """Position-wise feed-forward network: c_proj(gelu(c_fc(x)))."""
  hidden_dim: int
  kernel_init: nn.initializers.Initializer
  out_kernel_init: nn.initializers.Initializer

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = nn.gelu(nn.Dense(self.hidden_dim, kernel_init=self.kernel_init, name='c_fc')(x),
                approximate=True)
    return nn.Dense(x.shape[-1], kernel_init=self.out_kernel_init, name='c_proj')(h)


class Block(nn.Module):
  """One decoder block: causal self-attention and MLP, post-norm (GPT) or pre-norm (GPT-2)."""
  num_heads: int
  mlp_dim: int
  pre_norm: bool
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-5
  kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  residual_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  attention_fn: AttentionFn = dot_product_attention

  @nn.compact
  def __call__(self, x: Array, *, decode: bool = False, train: bool = False) -> Array:
    ln_1 = nn.LayerNorm(self.layer_norm_epsilon, name='ln_1')
    ln_2 = nn.LayerNorm(self.layer_norm_epsilon, name='ln_2')
    attention = MultiHeadAttention(
        self.num_heads, dropout_rate=self.attention_dropout_rate, attention_fn=self.attention_fn,
        kernel_init=self.kernel_init, out_kernel_init=self.residual_init, name='attn')
    mlp = MLP(self.mlp_dim, self.kernel_init, self.residual_init, name='mlp')

    def attend(y):
      return attention(y, causal=True, decode=decode, train=train)

    def drop(y):
      return nn.Dropout(self.dropout_rate, deterministic=not train)(y)

    if self.pre_norm:
      x = x + drop(attend(ln_1(x)))
      return x + drop(mlp(ln_2(x)))
    x = ln_1(x + drop(attend(x)))
    return ln_2(x + drop(mlp(x)))


class GPT(nn.Module):
  """Decoder-only language model. `model(tokens [B, L] int) -> logits [B, L, vocab_size]`.

  Attributes:
    vocab_size, max_len: token vocabulary and context length (rows of `wte`, `wpe`).
    num_layers, num_heads, hidden_dim, mlp_dim: transformer sizes.
    pre_norm: False for GPT (post-norm, no final LayerNorm), True for GPT-2 (pre-norm + `ln_f`).
    scale_residual_init: GPT-2's N(0, 0.02 / sqrt(2 num_layers)) init of residual projections.
    dropout_rate, attention_dropout_rate: residual/embedding and attention-weight dropout.
    attention_fn: the attention function (e.g. a partial of `chunked_attention`).

  `decode=True` runs with the KV cache (see `MultiHeadAttention`): the 'cache' collection also holds
  `position`, the index of the next token, so each call continues where the last one stopped. Use
  `init_cache` for an empty cache and `generate` for sampling.
  """
  vocab_size: int
  max_len: int
  num_layers: int = 12
  num_heads: int = 12
  hidden_dim: int = 768
  mlp_dim: int = 3072
  pre_norm: bool = True
  scale_residual_init: bool = True
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-5
  attention_fn: AttentionFn = dot_product_attention

  @nn.compact
  def __call__(self, tokens: Array, *, decode: bool = False, train: bool = False) -> Array:
    length = tokens.shape[1]
    if length > self.max_len:
      raise ValueError(f'sequence length {length} exceeds the context length {self.max_len}')
    init = nn.initializers.normal(0.02)
    wte = nn.Embed(self.vocab_size, self.hidden_dim, embedding_init=init, name='wte')
    start = decode_position(self, length) if decode else 0
    positions = start + jnp.arange(length)
    x = wte(tokens) + nn.Embed(self.max_len, self.hidden_dim, embedding_init=init,
                               name='wpe')(positions)[None]
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    residual_init = init
    if self.scale_residual_init:
      residual_init = nn.initializers.normal(0.02 / math.sqrt(2 * self.num_layers))
    for i in range(self.num_layers):
      x = Block(self.num_heads, self.mlp_dim, self.pre_norm, self.dropout_rate,
                self.attention_dropout_rate, self.layer_norm_epsilon, init, residual_init,
                self.attention_fn, name=f'h_{i}')(x, decode=decode, train=train)
    if self.pre_norm:
      x = nn.LayerNorm(self.layer_norm_epsilon, name='ln_f')(x)
    return wte.attend(x)  # Tied output layer: h W_e^T.


def gpt1(**overrides) -> GPT:
  """GPT (Radford et al. 2018), section 4.1."""
  return GPT(**{**dict(vocab_size=40478, max_len=512, num_layers=12, num_heads=12, hidden_dim=768,
                       mlp_dim=3072, pre_norm=False, scale_residual_init=False), **overrides})


def gpt2(size: str = 'small', **overrides) -> GPT:
  """GPT-2 (Radford et al. 2019), Table 2; `size` in small, medium, large, xl."""
  layers, width = {'small': (12, 768), 'medium': (24, 1024), 'large': (36, 1280),
                   'xl': (48, 1600)}[size]
  # The released models use 64-wide heads.
  return GPT(**{**dict(vocab_size=50257, max_len=1024, num_layers=layers, num_heads=width // 64,
                       hidden_dim=width, mlp_dim=4 * width, pre_norm=True,
                       scale_residual_init=True), **overrides})


def init_cache(model: GPT, batch_size: int, length: int):
  """An empty KV cache for `batch_size` sequences of up to `length` tokens (zeros, position 0)."""
  def init():
    return model.init(jax.random.key(0), jnp.zeros((batch_size, length), jnp.int32), decode=True)
  shapes = jax.eval_shape(init)['cache']
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def top_k_logits(logits: Array, k: int) -> Array:
  """Keeps each row's k largest logits (exactly k; ties go to the lower index), -inf elsewhere."""
  _, indices = lax.top_k(logits, k)
  keep = jnp.put_along_axis(jnp.zeros(logits.shape, bool), indices, True, axis=-1, inplace=False)
  return jnp.where(keep, logits, -jnp.inf)


def top_p_logits(logits: Array, p: float) -> Array:
  """Keeps the nucleus: the fewest most-probable tokens whose total probability reaches p.

  A token is kept when the probability of the tokens ranked above it is still below p, so the most
  probable token is always kept and the kept set is minimal.
  """
  order = jnp.argsort(-logits, axis=-1, stable=True)
  probs = jax.nn.softmax(jnp.take_along_axis(logits, order, axis=-1), axis=-1)
  mass_above = jnp.cumsum(probs, axis=-1) - probs
  keep = jnp.put_along_axis(jnp.zeros(logits.shape, bool), order, mass_above < p, axis=-1,
                            inplace=False)
  return jnp.where(keep, logits, -jnp.inf)


def sample_logits(key: Array, logits: Array, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Array:
  """Draws one token id per row of `logits` [..., vocab]; temperature 0 returns the argmax."""
  if temperature < 0:
    raise ValueError(f'temperature must be >= 0; got {temperature}')
  if temperature == 0:
    return jnp.argmax(logits, axis=-1)
  logits = logits.astype(jnp.float32) / temperature
  if top_k is not None:
    logits = top_k_logits(logits, top_k)
  if top_p is not None and top_p < 1.0:
    logits = top_p_logits(logits, top_p)
  return jax.random.categorical(key, logits, axis=-1)


@functools.partial(jax.jit, static_argnames=('model', 'max_new_tokens', 'temperature', 'top_k',
                                             'top_p'))
def generate(model: GPT, params, prompt: Array, key: Array, *, max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None) -> Array:
  """Continues `prompt` [B, P] by `max_new_tokens` sampled tokens; returns [B, P + max_new_tokens].

  One compiled program: the prompt fills the KV cache in one pass, then `lax.scan` feeds each
  sampled token back. Every sequence runs for exactly `max_new_tokens` steps (no early stop at an
  end-of-text token; truncate afterwards).
  """
  batch, prompt_len = prompt.shape
  if max_new_tokens < 1:
    raise ValueError(f'max_new_tokens must be >= 1; got {max_new_tokens}')
  if prompt_len + max_new_tokens > model.max_len:
    raise ValueError(f'prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) exceeds the '
                     f'context length {model.max_len}')
  sample = functools.partial(sample_logits, temperature=temperature, top_k=top_k, top_p=top_p)

  def forward(cache, tokens):
    logits, updated = model.apply({'params': params, 'cache': cache}, tokens, decode=True,
                                  mutable=['cache'])
    return updated['cache'], logits[:, -1]

  cache, logits = forward(init_cache(model, batch, prompt_len + max_new_tokens), prompt)
  keys = jax.random.split(key, max_new_tokens)
  first = sample(keys[0], logits)

  def step(carry, step_key):
    cache, token = carry
    cache, logits = forward(cache, token[:, None])
    return (cache, sample(step_key, logits)), token

  (_, last), tokens = lax.scan(step, (cache, first), keys[1:])
  return jnp.concatenate([prompt, tokens.T, last[:, None]], axis=1).astype(prompt.dtype)


def _token_input(length: int = 8):
  return lambda: (jax.ShapeDtypeStruct((1, length), jnp.int32),)


_GPT1 = 'Improving Language Understanding by Generative Pre-Training (Radford et al. 2018)'
_GPT2 = 'Language Models are Unsupervised Multitask Learners (Radford et al. 2019)'
zoo.register('gpt1', gpt1, inputs=_token_input(), apply_kwargs={'train': False}, paper=_GPT1,
             reference_params=116_534_784,
             reference_source='Hugging Face openai-gpt (OpenAIGPTLMHeadModel, tied)')
for _size, _count in (('small', 124_439_808), ('medium', 354_823_168), ('large', 774_030_080),
                      ('xl', 1_557_611_200)):
  zoo.register(f'gpt2_{_size}', functools.partial(gpt2, _size), inputs=_token_input(),
               apply_kwargs={'train': False}, paper=_GPT2, reference_params=_count,
               reference_source=f'Hugging Face gpt2{"" if _size == "small" else "-" + _size} '
                                '(GPT2LMHeadModel, tied)')

# The byte-level language model of experiments/configs/char_lm.py: GPT-2's architecture at a CPU's
# size (4 layers of width 128, dropout 0.1 as GPT-2's released configuration); the experiment
# sets the context. `_tiny` is for tests.
_BYTES = 'project preset for the byte-level corpus of jaxpapers.data.text_corpus'
zoo.register('gpt_bytes_small', functools.partial(
    GPT, vocab_size=256, max_len=128, num_layers=4, num_heads=4, hidden_dim=128, mlp_dim=512,
    pre_norm=True, scale_residual_init=True, dropout_rate=0.1, attention_dropout_rate=0.1),
             inputs=_token_input(), apply_kwargs={'train': False}, paper=_GPT2,
             reference_params=None, reference_source=_BYTES)
zoo.register('gpt_bytes_tiny', functools.partial(
    GPT, vocab_size=256, max_len=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=64,
    pre_norm=True, scale_residual_init=True, dropout_rate=0.0, attention_dropout_rate=0.0),
             inputs=_token_input(), apply_kwargs={'train': False}, paper=_GPT2,
             reference_params=None, reference_source=_BYTES + ' (tests)')
