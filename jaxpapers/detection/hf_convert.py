"""Hugging Face DETR (`transformers.DetrForObjectDetection`) state dicts as this project's DETR
variables, for the parity test (tests/parity/test_detr_parity.py) on random weights.

The backbone is HF's own ResNet (`ResNetConfig`, `use_timm_backbone` off): its embedder and stages
map onto `convnets.resnet.ResNetFeatures` (conv1/bn1, layer{s}_{b}/conv{k}/bn{k}, the shortcut as
downsample_0/downsample_1); its frozen batch norms' weight and bias become BN scale and bias, their
running statistics `batch_stats`. Linear weights are transposed ([out, in] -> [in, out]), conv
weights moved from OIHW to HWIO. HF's q/k/v/o projections are `MultiHeadAttention`'s
query/key/value/out (heads are consecutive slices in both). Only what the model here has is read.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jaxpapers.detection import detr


def _np(t: Any) -> np.ndarray:
  return np.asarray(t.detach().cpu().numpy() if hasattr(t, 'detach') else t, np.float32)


def detr_config(hf_config: Any) -> detr.DETRConfig:
  """The DETRConfig of an HF DetrConfig (dropout off: parity is compared in eval mode)."""
  backbone = hf_config.backbone_config
  if hf_config.encoder_attention_heads != hf_config.decoder_attention_heads or (
      hf_config.encoder_ffn_dim != hf_config.decoder_ffn_dim):
    raise ValueError('DETRConfig has one head count and one FFN width for both stacks')
  return detr.DETRConfig(
      num_classes=hf_config.num_labels, num_queries=hf_config.num_queries,
      d_model=hf_config.d_model, num_heads=hf_config.encoder_attention_heads,
      d_ff=hf_config.encoder_ffn_dim, num_encoder_layers=hf_config.encoder_layers,
      num_decoder_layers=hf_config.decoder_layers, dropout_rate=0.0,
      stage_sizes=tuple(backbone.depths[:int(backbone.out_features[-1][len('stage'):])]),
      block=backbone.layer_type, frozen_batch_norm=True)


def detr_variables(state_dict: Mapping[str, Any], config: detr.DETRConfig) -> dict[str, Any]:
  """{'params', 'batch_stats'} of `detr.DETR(config)` from an HF DetrForObjectDetection state dict."""
  sd = {k: _np(v) for k, v in state_dict.items()}
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}

  def conv(key):
    return {'kernel': sd[key + '.weight'].transpose(2, 3, 1, 0)}

  def dense(key):
    return {'kernel': sd[key + '.weight'].T, 'bias': sd[key + '.bias']}

  def norm(key):
    return {'scale': sd[key + '.weight'], 'bias': sd[key + '.bias']}

  def conv_bn(key, conv_name, bn_name, into, stats_into):
    into[conv_name] = conv(key + '.convolution')
    into[bn_name] = norm(key + '.normalization')
    stats_into[bn_name] = {'mean': sd[key + '.normalization.running_mean'],
                           'var': sd[key + '.normalization.running_var']}

  resnet = 'model.backbone.model.'
  backbone, backbone_stats = {}, {}
  conv_bn(resnet + 'embedder.embedder', 'conv1', 'bn1', backbone, backbone_stats)
  convs_per_block = 2 if config.block == 'basic' else 3
  for s, size in enumerate(config.stage_sizes):
    for b in range(size):
      key = f'{resnet}encoder.stages.{s}.layers.{b}'
      block, block_stats = {}, {}
      for k in range(convs_per_block):
        conv_bn(f'{key}.layer.{k}', f'conv{k + 1}', f'bn{k + 1}', block, block_stats)
      if key + '.shortcut.convolution.weight' in sd:
        conv_bn(key + '.shortcut', 'downsample_0', 'downsample_1', block, block_stats)
      backbone[f'layer{s + 1}_{b}'], backbone_stats[f'layer{s + 1}_{b}'] = block, block_stats
  params['backbone'], stats['backbone'] = backbone, backbone_stats

  params['input_proj'] = {'kernel': sd['model.input_projection.weight'].transpose(2, 3, 1, 0),
                          'bias': sd['model.input_projection.bias']}

  def attention(key):
    return {ours: dense(f'{key}.{theirs}_proj') for ours, theirs in
            (('query', 'q'), ('key', 'k'), ('value', 'v'), ('out', 'o'))}

  def ffn(key):
    return {'linear1': dense(key + '.mlp.fc1'), 'linear2': dense(key + '.mlp.fc2')}

  for i in range(config.num_encoder_layers):
    key = f'model.encoder.layers.{i}'
    params[f'encoder_{i}'] = {'self_attn': attention(key + '.self_attn'),
                              'norm1': norm(key + '.self_attn_layer_norm'), 'ffn': ffn(key),
                              'norm2': norm(key + '.final_layer_norm')}
  for i in range(config.num_decoder_layers):
    key = f'model.decoder.layers.{i}'
    params[f'decoder_{i}'] = {'self_attn': attention(key + '.self_attn'),
                              'norm1': norm(key + '.self_attn_layer_norm'),
                              'cross_attn': attention(key + '.encoder_attn'),
                              'norm2': norm(key + '.encoder_attn_layer_norm'), 'ffn': ffn(key),
                              'norm3': norm(key + '.final_layer_norm')}
  params['decoder_norm'] = norm('model.decoder.layernorm')
  params['query_embed'] = sd['model.query_position_embeddings.weight']
  params['class_embed'] = dense('class_labels_classifier')
  params['bbox_embed'] = {f'layers_{k}': dense(f'bbox_predictor.layers.{k}') for k in range(3)}
  return {'params': params, 'batch_stats': stats}
