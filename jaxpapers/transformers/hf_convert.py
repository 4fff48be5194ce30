"""Hugging Face `transformers` checkpoints -> this package's GPT-2, BERT and ViT parameters.

The papers' released weights reach most users as Hugging Face state dicts; these converters load
them into the Flax modules of `gpt.py` ("Language Models are Unsupervised Multitask Learners",
Radford et al. 2019), `bert.py` ("BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding", Devlin et al. 2018, arXiv:1810.04805) and `vit.py` ("An Image is Worth
16x16 Words", Dosovitskiy et al. 2020, arXiv:2010.11929), whose parameter names were chosen to
make this a renaming (see each module's docstring):

  * GPT-2 (`GPT2LMHeadModel`): HF's `Conv1D` weights are already [in, out]; the fused
    `attn.c_attn` [d, 3d] splits column-wise into query, key and value. `lm_head.weight` must be
    the token embedding (tied, as in every released GPT-2).
  * BERT (`BertForPreTraining`, `BertModel`): `nn.Linear` weights are [out, in] and are
    transposed; the MLM decoder must be tied to the word embeddings, its bias is `mlm_bias`.
  * ViT (`ViTForImageClassification`, `ViTModel`): the patch projection [d, C, p, p] becomes an
    HWIO kernel. Both `transformers` 4.x names (`vit.encoder.layer.{i}.attention.attention.query`,
    `intermediate.dense`, `output.dense`) and 5.x names (`vit.layers.{i}.attention.q_proj`,
    `mlp.fc1`, `mlp.fc2`) are read.

A state dict is any mapping from names to arrays: PyTorch tensors (moved to the CPU and copied)
or NumPy arrays; torch is never imported here. Every entry must be used, except the non-parameter
buffers older versions saved (`attn.bias`, `attn.masked_bias`, `position_ids`): a checkpoint of
another architecture or size fails with the names left over rather than loading partially.

`gpt2_model`, `bert_config` and `vit_model` build the matching module from a HF config object
(`GPT2Config`, `BertConfig`, `ViTConfig`, or anything with the same attributes). One difference
remains for ViT: our LayerNorm epsilon is the paper code's 1e-6 where HF configs say 1e-12; with
unit-scale activations the outputs differ by about 1e-6 relatively.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from jaxpapers.transformers import bert, gpt, vit

# Buffers, not parameters, that some transformers versions include in state dicts.
_BUFFERS = re.compile(r'(^|\.)(attn\.bias|attn\.masked_bias|position_ids)$')


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # A torch tensor.
    value = value.detach().cpu().float().numpy()
  return np.array(value, dtype=np.float32)


class _StateDict:
  """Names -> float32 NumPy arrays, consumed by `take`; `check_all_used` names the leftovers."""

  def __init__(self, state_dict: Mapping[str, Any], prefix: str = ''):
    self._arrays = {k[len(prefix):] if k.startswith(prefix) else k: v
                    for k, v in state_dict.items() if not _BUFFERS.search(k)}
    self._used: set[str] = set()

  def __contains__(self, name: str) -> bool:
    return name in self._arrays

  def take(self, name: str) -> np.ndarray:
    if name not in self._arrays:
      raise KeyError(f'the state dict has no {name!r}; is it a checkpoint of this architecture?')
    self._used.add(name)
    return _to_numpy(self._arrays[name])

  def linear(self, name: str, transpose: bool = True) -> dict[str, np.ndarray]:
    """A Dense layer from `{name}.weight` ([out, in] when `transpose`) and `{name}.bias`."""
    weight = self.take(f'{name}.weight')
    return {'kernel': weight.T if transpose else weight, 'bias': self.take(f'{name}.bias')}

  def layer_norm(self, name: str) -> dict[str, np.ndarray]:
    return {'scale': self.take(f'{name}.weight'), 'bias': self.take(f'{name}.bias')}

  def check_all_used(self) -> None:
    unused = sorted(set(self._arrays) - self._used)
    if unused:
      raise ValueError(f'{len(unused)} state-dict entries have no place in the model (another '
                       f'architecture or size?): {", ".join(unused[:8])}'
                       + (' ...' if len(unused) > 8 else ''))


def _num_layers(sd: _StateDict, pattern: str) -> int:
  indices = {int(m.group(1)) for k in sd._arrays if (m := re.match(pattern, k))}
  if indices != set(range(len(indices))):
    raise ValueError(f'layer indices are not 0..n-1: {sorted(indices)}')
  return len(indices)


def _check_tied(sd: _StateDict, output: str, embedding: np.ndarray) -> None:
  if output in sd and not np.array_equal(sd.take(output), embedding):
    raise ValueError(f'{output} differs from the token embedding: the models here tie them')


def gpt2_params(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """`GPT2LMHeadModel` / `GPT2Model` state dict -> params of `gpt.GPT(pre_norm=True)`."""
  sd = _StateDict(state_dict, prefix='transformer.')
  wte = sd.take('wte.weight')
  params: dict[str, Any] = {'wte': {'embedding': wte}, 'wpe': {'embedding': sd.take('wpe.weight')},
                            'ln_f': sd.layer_norm('ln_f')}
  for i in range(_num_layers(sd, r'h\.(\d+)\.')):
    p = f'h.{i}'
    qkv = sd.linear(f'{p}.attn.c_attn', transpose=False)
    query, key, value = (dict(zip(('kernel', 'bias'), parts)) for parts in zip(
        np.split(qkv['kernel'], 3, axis=1), np.split(qkv['bias'], 3)))
    params[f'h_{i}'] = {
        'ln_1': sd.layer_norm(f'{p}.ln_1'), 'ln_2': sd.layer_norm(f'{p}.ln_2'),
        'attn': {'query': query, 'key': key, 'value': value,
                 'out': sd.linear(f'{p}.attn.c_proj', transpose=False)},
        'mlp': {'c_fc': sd.linear(f'{p}.mlp.c_fc', transpose=False),
                'c_proj': sd.linear(f'{p}.mlp.c_proj', transpose=False)},
    }
  _check_tied(sd, 'lm_head.weight', wte)
  sd.check_all_used()
  return params


def gpt2_model(config: Any) -> gpt.GPT:
  """The `gpt.GPT` of a `GPT2Config`."""
  if config.activation_function != 'gelu_new':
    raise ValueError(f'activation {config.activation_function!r}: GPT-2 here uses gelu_new (tanh)')
  return gpt.GPT(vocab_size=config.vocab_size, max_len=config.n_positions,
                 num_layers=config.n_layer, num_heads=config.n_head, hidden_dim=config.n_embd,
                 mlp_dim=config.n_inner or 4 * config.n_embd, pre_norm=True,
                 scale_residual_init=True, dropout_rate=config.resid_pdrop,
                 attention_dropout_rate=config.attn_pdrop,
                 layer_norm_epsilon=config.layer_norm_epsilon)


def bert_params(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """`BertForPreTraining` state dict -> params of `bert.BertForPreTraining`.

  A `BertModel` state dict (no `bert.` prefix, no heads) gives the encoder's params, i.e. the
  `bert` entry (for `bert.Bert`).
  """
  with_heads = any(k.startswith('cls.') for k in state_dict)
  sd = _StateDict(state_dict, prefix='bert.' if with_heads else '')
  word = sd.take('embeddings.word_embeddings.weight')
  encoder: dict[str, Any] = {
      'embeddings': {
          'word_embeddings': {'embedding': word},
          'position_embeddings': {'embedding': sd.take('embeddings.position_embeddings.weight')},
          'token_type_embeddings': {
              'embedding': sd.take('embeddings.token_type_embeddings.weight')},
          'LayerNorm': sd.layer_norm('embeddings.LayerNorm'),
      },
      'pooler': sd.linear('pooler.dense'),
  }
  for i in range(_num_layers(sd, r'encoder\.layer\.(\d+)\.')):
    p = f'encoder.layer.{i}'
    encoder[f'layer_{i}'] = {
        'attention': {
            **{n: sd.linear(f'{p}.attention.self.{n}') for n in ('query', 'key', 'value')},
            'out': sd.linear(f'{p}.attention.output.dense')},
        'attention_LayerNorm': sd.layer_norm(f'{p}.attention.output.LayerNorm'),
        'intermediate': sd.linear(f'{p}.intermediate.dense'),
        'output': sd.linear(f'{p}.output.dense'),
        'output_LayerNorm': sd.layer_norm(f'{p}.output.LayerNorm'),
    }
  if not with_heads:
    sd.check_all_used()
    return encoder
  params = {
      'bert': encoder,
      'transform': sd.linear('cls.predictions.transform.dense'),
      'transform_LayerNorm': sd.layer_norm('cls.predictions.transform.LayerNorm'),
      'mlm_bias': sd.take('cls.predictions.bias'),
      'seq_relationship': sd.linear('cls.seq_relationship'),
  }
  _check_tied(sd, 'cls.predictions.decoder.weight', word)
  if 'cls.predictions.decoder.bias' in sd and not np.array_equal(
      sd.take('cls.predictions.decoder.bias'), params['mlm_bias']):
    raise ValueError('cls.predictions.decoder.bias differs from cls.predictions.bias')
  sd.check_all_used()
  return params


def bert_config(config: Any) -> bert.BertConfig:
  """The `bert.BertConfig` of a HF `BertConfig`."""
  if config.hidden_act != 'gelu':
    raise ValueError(f'activation {config.hidden_act!r}: BERT here uses the exact (erf) GELU')
  return bert.BertConfig(
      vocab_size=config.vocab_size, hidden_dim=config.hidden_size,
      num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
      mlp_dim=config.intermediate_size, max_len=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, dropout_rate=config.hidden_dropout_prob,
      attention_dropout_rate=config.attention_probs_dropout_prob,
      layer_norm_epsilon=config.layer_norm_eps, initializer_range=config.initializer_range)


# transformers 4.x ViT names -> 5.x names (the ones read below).
_VIT_V4_NAMES = (
    (r'encoder\.layer\.(\d+)\.attention\.attention\.query\.', r'layers.\1.attention.q_proj.'),
    (r'encoder\.layer\.(\d+)\.attention\.attention\.key\.', r'layers.\1.attention.k_proj.'),
    (r'encoder\.layer\.(\d+)\.attention\.attention\.value\.', r'layers.\1.attention.v_proj.'),
    (r'encoder\.layer\.(\d+)\.attention\.output\.dense\.', r'layers.\1.attention.o_proj.'),
    (r'encoder\.layer\.(\d+)\.intermediate\.dense\.', r'layers.\1.mlp.fc1.'),
    (r'encoder\.layer\.(\d+)\.output\.dense\.', r'layers.\1.mlp.fc2.'),
    (r'encoder\.layer\.(\d+)\.layernorm_', r'layers.\1.layernorm_'),
)


def vit_params(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """`ViTForImageClassification` (or `ViTModel`, without pooler) state dict -> `vit.ViT` params."""
  renamed = {}
  for name, value in state_dict.items():
    for pattern, replacement in _VIT_V4_NAMES:
      name = re.sub(pattern, replacement, name)
    renamed[name] = value
  with_head = 'classifier.weight' in renamed
  sd = _StateDict(renamed, prefix='vit.' if with_head else '')
  patch = sd.take('embeddings.patch_embeddings.projection.weight')  # [d, C, p, p]
  params: dict[str, Any] = {
      'embedding': {'kernel': patch.transpose(2, 3, 1, 0),
                    'bias': sd.take('embeddings.patch_embeddings.projection.bias')},
      'cls': sd.take('embeddings.cls_token'),
      'pos_embedding': sd.take('embeddings.position_embeddings'),
      'encoder_norm': sd.layer_norm('layernorm'),
  }
  for i in range(_num_layers(sd, r'layers\.(\d+)\.')):
    p = f'layers.{i}'
    params[f'encoderblock_{i}'] = {
        'ln_1': sd.layer_norm(f'{p}.layernorm_before'),
        'attn': {ours: sd.linear(f'{p}.attention.{theirs}') for ours, theirs in
                 (('query', 'q_proj'), ('key', 'k_proj'), ('value', 'v_proj'), ('out', 'o_proj'))},
        'ln_2': sd.layer_norm(f'{p}.layernorm_after'),
        'mlp': {'fc1': sd.linear(f'{p}.mlp.fc1'), 'fc2': sd.linear(f'{p}.mlp.fc2')},
    }
  if with_head:
    params['head'] = sd.linear('classifier')
  sd.check_all_used()
  return params


def vit_model(config: Any, with_head: bool = True) -> vit.ViT:
  """The `vit.ViT` of a HF `ViTConfig` (`with_head=False`: the `ViTModel` features)."""
  if config.hidden_act != 'gelu' or not config.qkv_bias:
    raise ValueError('ViT here uses the exact GELU and biased query/key/value projections')
  return vit.ViT(num_classes=config.num_labels if with_head else None,
                 patch_size=config.patch_size, hidden_dim=config.hidden_size,
                 num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
                 mlp_dim=config.intermediate_size, dropout_rate=config.hidden_dropout_prob,
                 attention_dropout_rate=config.attention_probs_dropout_prob)
