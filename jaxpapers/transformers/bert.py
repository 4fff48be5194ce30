"""BERT: a bidirectional transformer encoder pre-trained by masked language modelling.

"BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding" (Devlin, Chang,
Lee, Toutanova 2018, arXiv:1810.04805):
  * section 3 and Figure 2: input = token + segment + learned position embeddings (followed, as in
    the released code, by LayerNorm and dropout); an encoder of post-norm Transformer layers
    (Vaswani et al. 2017: x = LN(x + Sublayer(x))) with GELU feed-forward layers;
    BERT_BASE (L=12, H=768, A=12) and BERT_LARGE (L=24, H=1024, A=16), feed-forward width 4H.
  * section 3.1 Task #1 (masked LM) and appendix A.1: 15% of the WordPiece positions are chosen;
    a chosen token is replaced by [MASK] 80% of the time, by a random token 10%, and kept 10%; the
    model predicts the original token at chosen positions only (`mask_tokens`). The MLM head is the
    released code's: dense + GELU + LayerNorm, then the output layer tied to the word embeddings,
    with its own bias.
  * section 3.1 Task #2 (next sentence prediction): a binary classifier on C, the final state of
    [CLS] passed through the pooler (dense + tanh, as released).

Departures: none in the architecture. `mask_tokens` chooses a fixed number of tokens per sequence,
like the released `create_pretraining_data.py` (Hugging Face's collator flips an independent coin
per token instead), but counts 15% of the maskable tokens where the released script counts 15% of
all tokens, [CLS] and [SEP] included, and it has no `max_predictions_per_seq` cap; random
replacements are drawn uniformly from the whole vocabulary, as in both. LayerNorm epsilon is 1e-12
and GELU the exact erf form, as in the released code and Hugging Face.

Parameter names follow Hugging Face's `BertForPreTraining` so a converter is a renaming:
`bert/embeddings/{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}`,
`bert/layer_{i}/{attention/{query,key,value,out},attention_LayerNorm,intermediate,output,
output_LayerNorm}`, `bert/pooler`, `transform`, `transform_LayerNorm`, `mlm_bias`,
`seq_relationship`. HF's `attention.output.dense` is our `attention/out`; PyTorch Linear weights
are [out, in] and need a transpose into Flax's [in, out] kernels.

Parameter counts (reference: Hugging Face `BertForPreTraining` with the bert-base-uncased /
bert-large-uncased configs: vocab 30522, 512 positions, 2 segment types; the decoder weight is the
word embedding and HF ties `decoder.bias` to `predictions.bias`, so both are counted once):
  BertModel = embeddings (V + 512 + 2) H + 2H
            + L (4 (H^2 + H) + 2 H + 2 * 4H^2 + 5H + 2H) + pooler (H^2 + H)
  heads     = transform (H^2 + H + 2H) + decoder bias V + NSP (2H + 2)
  bert_base:  109,482,240 + 624,188 = 110,106,428
  bert_large: 335,141,888 + 1,084,220 = 336,226,108
(The paper rounds these to 110M and 340M.)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.nn.attention import AttentionFn, MultiHeadAttention, dot_product_attention

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes and regularisation of a BERT model (defaults: BERT_BASE, uncased vocabulary)."""
  vocab_size: int = 30522
  hidden_dim: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  max_len: int = 512
  type_vocab_size: int = 2
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-12
  initializer_range: float = 0.02
  attention_fn: AttentionFn = dot_product_attention


BERT_BASE = BertConfig()
BERT_LARGE = BertConfig(hidden_dim=1024, num_layers=24, num_heads=16, mlp_dim=4096)


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(config.layer_norm_epsilon, name=name)


class BertEmbeddings(nn.Module):
  """Word + position + segment embeddings, LayerNorm, dropout (Figure 2)."""
  config: BertConfig

  def setup(self):
    c = self.config
    init = nn.initializers.truncated_normal(c.initializer_range)
    self.word_embeddings = nn.Embed(c.vocab_size, c.hidden_dim, embedding_init=init)
    self.position_embeddings = nn.Embed(c.max_len, c.hidden_dim, embedding_init=init)
    self.token_type_embeddings = nn.Embed(c.type_vocab_size, c.hidden_dim, embedding_init=init)
    self.LayerNorm = nn.LayerNorm(c.layer_norm_epsilon)  # pylint: disable=invalid-name
    self.dropout = nn.Dropout(c.dropout_rate)

  def __call__(self, input_ids: Array, token_type_ids: Array, *, train: bool) -> Array:
    positions = jnp.arange(input_ids.shape[1])[None]
    x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
         + self.token_type_embeddings(token_type_ids))
    return self.dropout(self.LayerNorm(x), deterministic=not train)


class BertLayer(nn.Module):
  """Post-norm encoder layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""
  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array | None, *, train: bool) -> Array:
    c = self.config
    init = nn.initializers.truncated_normal(c.initializer_range)

    def drop(y):
      return nn.Dropout(c.dropout_rate, deterministic=not train)(y)

    attended = MultiHeadAttention(c.num_heads, dropout_rate=c.attention_dropout_rate,
                                  attention_fn=c.attention_fn, kernel_init=init,
                                  name='attention')(x, mask=mask, train=train)
    x = _layer_norm(c, 'attention_LayerNorm')(x + drop(attended))
    h = nn.gelu(nn.Dense(c.mlp_dim, kernel_init=init, name='intermediate')(x), approximate=False)
    h = nn.Dense(c.hidden_dim, kernel_init=init, name='output')(h)
    return _layer_norm(c, 'output_LayerNorm')(x + drop(h))


class Bert(nn.Module):
  """The encoder (HF `BertModel`): returns (sequence output [B, L, H], pooled [CLS] output [B, H]).

  `input_ids` [B, L] int; `token_type_ids` [B, L] segment ids (default 0); `attention_mask` [B, L],
  1/True for real tokens and 0/False for padding (padding is never attended to).
  """
  config: BertConfig

  def setup(self):
    c = self.config
    self.embeddings = BertEmbeddings(c)
    self.layer = [BertLayer(c) for _ in range(c.num_layers)]
    self.pooler = nn.Dense(c.hidden_dim,
                           kernel_init=nn.initializers.truncated_normal(c.initializer_range))

  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None, *, train: bool = False) -> tuple[Array, Array]:
    if input_ids.shape[1] > self.config.max_len:
      raise ValueError(f'sequence length {input_ids.shape[1]} exceeds {self.config.max_len}')
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    mask = None
    if attention_mask is not None:
      mask = attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, L]: mask keys only.
    x = self.embeddings(input_ids, token_type_ids, train=train)
    for layer in self.layer:
      x = layer(x, mask, train=train)
    return x, jnp.tanh(self.pooler(x[:, 0]))

  def attend(self, x: Array) -> Array:
    """x W_e^T: the MLM output layer tied to the word embeddings."""
    return self.embeddings.word_embeddings.attend(x)


class BertForPreTraining(nn.Module):
  """BERT with its masked-LM and next-sentence-prediction heads (section 3.1).

  Returns (mlm_logits [B, L, V] or [B, P, V] when `masked_positions` [B, P] is given, as the
  released code gathers only the chosen positions; nsp_logits [B, 2], class 0 = "IsNext").
  """
  config: BertConfig = BERT_BASE

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
               attention_mask: Array | None = None, masked_positions: Array | None = None, *,
               train: bool = False) -> tuple[Array, Array]:
    c = self.config
    init = nn.initializers.truncated_normal(c.initializer_range)
    bert = Bert(c, name='bert')
    sequence, pooled = bert(input_ids, token_type_ids, attention_mask, train=train)
    if masked_positions is not None:
      sequence = jnp.take_along_axis(sequence, masked_positions[..., None], axis=1)
    h = nn.gelu(nn.Dense(c.hidden_dim, kernel_init=init, name='transform')(sequence),
                approximate=False)
    h = _layer_norm(c, 'transform_LayerNorm')(h)
    mlm_logits = bert.attend(h) + self.param('mlm_bias', nn.initializers.zeros, (c.vocab_size,))
    nsp_logits = nn.Dense(2, kernel_init=init, name='seq_relationship')(pooled)
    return mlm_logits, nsp_logits


def mask_tokens(key: Array, tokens: Array, *, vocab_size: int, mask_id: int,
                special_ids: Sequence[int], mask_prob: float = 0.15, mask_token_prob: float = 0.8,
                random_token_prob: float = 0.1) -> tuple[Array, Array]:
  """The masked-LM corruption of section 3.1 / appendix A.1, as a pure function.

  In each row of `tokens` [B, L], round(mask_prob * n) of the n tokens that are not in
  `special_ids` ([CLS], [SEP], [PAD], ...) are chosen uniformly at random (at least one when n > 0).
  A chosen token becomes `mask_id` with probability `mask_token_prob`, a uniformly random id in
  [0, vocab_size) with probability `random_token_prob`, and stays as it is otherwise.

  Returns (inputs, chosen): the corrupted tokens, and the boolean [B, L] positions whose original
  token (`tokens`) is the prediction target.
  """
  choose_key, action_key, random_key = jax.random.split(key, 3)
  maskable = ~jnp.isin(tokens, jnp.asarray(list(special_ids), tokens.dtype))
  num_maskable = jnp.sum(maskable, axis=1, keepdims=True)
  num_chosen = jnp.where(num_maskable > 0,
                         jnp.maximum(1, jnp.round(mask_prob * num_maskable)), 0)
  # The positions with the smallest random scores among the maskable ones are chosen.
  scores = jnp.where(maskable, jax.random.uniform(choose_key, tokens.shape), jnp.inf)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  chosen = rank < num_chosen
  action = jax.random.uniform(action_key, tokens.shape)
  random_tokens = jax.random.randint(random_key, tokens.shape, 0, vocab_size, tokens.dtype)
  inputs = jnp.where(chosen & (action < mask_token_prob), mask_id, tokens)
  replace = (action >= mask_token_prob) & (action < mask_token_prob + random_token_prob)
  inputs = jnp.where(chosen & replace, random_tokens, inputs)
  return inputs, chosen


def pretraining_loss(mlm_logits: Array, nsp_logits: Array, targets: Array, target_weights: Array,
                     nsp_labels: Array) -> Array:
  """Mean MLM cross-entropy over the chosen positions plus mean NSP cross-entropy (section 3.1).

  `targets`/`target_weights` align with `mlm_logits`' positions (gather them with the same
  `masked_positions` when those were used).
  """
  mlm = optax.softmax_cross_entropy_with_integer_labels(mlm_logits, targets)
  weights = target_weights.astype(mlm.dtype)
  mlm = jnp.sum(mlm * weights) / jnp.maximum(jnp.sum(weights), 1.0)
  nsp = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, nsp_labels).mean()
  return mlm + nsp


def _bert_inputs(length: int = 8):
  return lambda: (jax.ShapeDtypeStruct((1, length), jnp.int32),)


_PAPER = ('BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding '
          '(Devlin et al. 2018, arXiv:1810.04805)')
zoo.register('bert_base', lambda: BertForPreTraining(BERT_BASE), inputs=_bert_inputs(),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=110_106_428,
             reference_source='Hugging Face BertForPreTraining, bert-base-uncased config '
                              '(BertModel 109,482,240 + heads; see module docstring)')
zoo.register('bert_large', lambda: BertForPreTraining(BERT_LARGE), inputs=_bert_inputs(),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=336_226_108,
             reference_source='Hugging Face BertForPreTraining, bert-large-uncased config '
                              '(BertModel 335,141,888 + heads; see module docstring)')

# Byte-level pre-training on the offline corpus (experiments/configs/bert_mlm.py): BERT's
# architecture at a CPU's size (4 layers of width 128; BERT_BASE is 12 of 768) over 256 bytes and
# 4 special tokens; the experiment sets the sequence length. `_tiny` is for tests.
_BYTES = 'project preset for the byte-level corpus of jaxpapers.data.text_corpus'
zoo.register('bert_bytes_small', lambda: BertForPreTraining(BertConfig(
    vocab_size=260, hidden_dim=128, num_layers=4, num_heads=4, mlp_dim=512, max_len=127)),
             inputs=_bert_inputs(), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source=_BYTES)
zoo.register('bert_bytes_tiny', lambda: BertForPreTraining(BertConfig(
    vocab_size=260, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=64, max_len=15,
    dropout_rate=0.0, attention_dropout_rate=0.0)), inputs=_bert_inputs(),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=None,
             reference_source=_BYTES + ' (tests)')
