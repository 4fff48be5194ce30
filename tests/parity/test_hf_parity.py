"""Hugging Face GPT-2, BERT and ViT with random weights, converted: the same outputs to 1e-4.

The HF models are built from small configs (no download); every weight is redrawn larger than HF's
initialisation so the outputs are far from uniform and a misplaced weight shows.
"""

import re

import jax
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.transformers import bert, hf_convert

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')


def _randomise(model, std=0.3, seed=0):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():  # Tied parameters appear once and stay tied.
      p.normal_(0.0, std)
  return model.eval()


def _close(ours, theirs):
  np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), atol=1e-4, rtol=1e-4)


def test_gpt2_logits_match():
  config = transformers.GPT2Config(vocab_size=50, n_positions=12, n_embd=16, n_layer=2, n_head=2,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                   bos_token_id=0, eos_token_id=0)
  hf = _randomise(transformers.GPT2LMHeadModel(config))
  ids = np.random.default_rng(0).integers(0, 50, (2, 10))
  params = hf_convert.gpt2_params(hf.state_dict())
  logits = jax.jit(hf_convert.gpt2_model(config).apply)({'params': params}, ids.astype(np.int32))
  with torch.no_grad():
    _close(logits, hf(torch.tensor(ids)).logits)


def test_bert_pretraining_heads_match_with_padding_and_segments():
  config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32,
                                   max_position_embeddings=12, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)
  hf = _randomise(transformers.BertForPreTraining(config), std=0.2)
  rng = np.random.default_rng(1)
  ids = rng.integers(0, 40, (2, 10))
  segments = (np.arange(10)[None] >= np.array([[4], [6]])).astype(np.int64)
  attention = np.ones((2, 10), np.int64)
  attention[1, 7:] = 0
  params = hf_convert.bert_params(hf.state_dict())
  model = bert.BertForPreTraining(hf_convert.bert_config(config))
  mlm, nsp = jax.jit(model.apply)({'params': params}, *(x.astype(np.int32) for x in
                                                        (ids, segments, attention)))
  with torch.no_grad():
    out = hf(torch.tensor(ids), attention_mask=torch.tensor(attention),
             token_type_ids=torch.tensor(segments))
  _close(mlm, out.prediction_logits)
  _close(nsp, out.seq_relationship_logits)
  # The encoder alone, from a BertModel state dict.
  encoder = hf_convert.bert_params(hf.bert.state_dict())
  np.testing.assert_array_equal(encoder['layer_1']['output']['kernel'],
                                params['bert']['layer_1']['output']['kernel'])


def test_vit_logits_match_from_either_transformers_naming():
  config = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=16,
                                  num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, num_labels=5, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
  hf = _randomise(transformers.ViTForImageClassification(config), std=0.2)
  images = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
  state = hf.state_dict()
  params = hf_convert.vit_params(state)
  logits = jax.jit(hf_convert.vit_model(config).apply)({'params': params},
                                                       images.transpose(0, 2, 3, 1))
  with torch.no_grad():
    _close(logits, hf(torch.tensor(images)).logits)
  # transformers 4.x saved the same weights under other names; both load identically.
  old_names = {'q_proj': 'attention.query', 'k_proj': 'attention.key',
               'v_proj': 'attention.value', 'o_proj': 'output.dense'}

  def to_v4(name):
    name = re.sub(r'layers\.(\d+)\.attention\.(\w_proj)',
                  lambda m: f'encoder.layer.{m[1]}.attention.{old_names[m[2]]}', name)
    name = re.sub(r'layers\.(\d+)\.mlp\.fc1', r'encoder.layer.\1.intermediate.dense', name)
    name = re.sub(r'layers\.(\d+)\.mlp\.fc2', r'encoder.layer.\1.output.dense', name)
    return re.sub(r'layers\.(\d+)\.layernorm', r'encoder.layer.\1.layernorm', name)

  if any('q_proj' in k for k in state):
    v4 = {to_v4(k): v for k, v in state.items()}
    assert any('attention.attention.query' in k for k in v4)
    jax.tree.map(np.testing.assert_array_equal, hf_convert.vit_params(v4), params)


def test_mismatched_checkpoints_fail_naming_the_problem():
  config = transformers.GPT2Config(vocab_size=20, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                                   bos_token_id=0, eos_token_id=0)
  state = dict(transformers.GPT2LMHeadModel(config).state_dict())
  with pytest.raises(ValueError, match='extra.weight'):
    hf_convert.gpt2_params({**state, 'transformer.extra.weight': np.zeros(3)})
  with pytest.raises(KeyError, match='ln_f.weight'):
    hf_convert.gpt2_params({k: v for k, v in state.items() if 'ln_f.weight' not in k})
  with pytest.raises(ValueError, match='tie'):
    hf_convert.gpt2_params({**state, 'lm_head.weight': torch.zeros(20, 8)})


def test_convert_script_reads_a_saved_gpt2_small(tmp_path, convert_script):
  """`save_pretrained`'s model.safetensors (tied head left out) -> scripts/convert.py -> the
  gpt2_small preset, giving HF's logits."""
  convert = convert_script
  torch.manual_seed(0)
  hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()  # the gpt2 (small) config
  hf.save_pretrained(tmp_path)
  variables = convert.convert('huggingface', 'gpt2_small',
                              convert.read_state_dict(str(tmp_path / 'model.safetensors')))
  ids = np.random.default_rng(3).integers(0, 50257, (2, 8))
  logits = jax.jit(zoo.build('gpt2_small').apply)(variables, ids.astype(np.int32))
  with torch.no_grad():
    _close(logits, hf(torch.tensor(ids)).logits)
