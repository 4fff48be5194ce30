"""Hugging Face DETR with random weights, converted: the same class logits and boxes. Runs under
`make parity` (torch and transformers); skips without them.

Only the last decoder layer is compared, with HF's `auxiliary_loss=False`: with it on, HF's
decoder (transformers 5.18.0) feeds each layer the LayerNorm-ed output of the previous one, where
the authors' decoder (and this one) normalises only the copies sent to the heads, so HF's
auxiliary outputs are not the paper's model. Found by comparing backbone, encoder and first
decoder layer, which agree to float rounding.

The HF model is built from a small config (its own ResNet backbone with basic blocks, no
download); every weight and BN statistic is redrawn so that a misplaced one shows.
"""

import jax
import numpy as np
import pytest

from jaxpapers.detection import detr, hf_convert

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')


def test_converted_hf_detr_gives_the_same_logits_and_boxes():
  backbone = transformers.ResNetConfig(embedding_size=64, hidden_sizes=[64, 128], depths=[1, 2],
                                       layer_type='basic', out_features=['stage2'])
  config = transformers.DetrConfig(
      backbone_config=backbone, num_labels=4, num_queries=7, d_model=32, encoder_layers=2,
      decoder_layers=2, encoder_ffn_dim=48, decoder_ffn_dim=48, encoder_attention_heads=4,
      decoder_attention_heads=4, auxiliary_loss=False, dropout=0.0)
  hf = transformers.DetrForObjectDetection(config).eval()
  torch.manual_seed(0)
  with torch.no_grad():
    for p in hf.parameters():
      p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.1))
    for name, b in hf.named_buffers():  # the frozen batch norms: weight, bias and statistics
      if name.endswith(('.weight', 'running_var')):
        b.copy_(torch.rand_like(b) + 0.5)
      elif name.endswith(('.bias', 'running_mean')):
        b.copy_(torch.randn_like(b) * 0.1)
  images = np.random.default_rng(0).normal(size=(2, 3, 48, 64)).astype(np.float32)
  with torch.no_grad():
    out = hf(pixel_values=torch.tensor(images))
  ours_config = hf_convert.detr_config(config)
  variables = hf_convert.detr_variables(hf.state_dict(), ours_config)
  ours = jax.jit(detr.DETR(ours_config).apply)(variables, images.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(ours['logits'][-1], out.logits.numpy(), atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(ours['boxes'][-1], out.pred_boxes.numpy(), atol=1e-4, rtol=1e-4)
