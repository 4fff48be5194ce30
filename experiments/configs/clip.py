"""CLIP contrastive pre-training on the offline captioned-shapes set, with zero-shot transfer.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford et al. 2021,
arXiv:2103.00020).

Presets:
  shapes_vit     the CPU run: a small ViT image tower (4 layers, width 128, 8x8 patches of the 32x32
                 images) and a small text transformer (4 layers, width 128, 16-token context)
  shapes_resnet  the same with a small modified ResNet image tower (stem, anti-aliased strides,
                 attention pooling; 1-1-1-1 blocks, width 16)
  tiny           a few steps of a tiny ViT CLIP on shapes_captions_tiny, for tests
  tiny_resnet    the same with a tiny ResNet tower

Settings and where they come from (section 2.5 of the paper, its Tables 19-20):
  - AdamW with decoupled weight decay on every weight but gains and biases, beta2 = 0.98,
    eps = 1e-6 (the ViT setting of Table 19), weight decay 0.2, cosine schedule with warm-up.
  - The temperature: learned, initialised to 0.07, logits scaled by at most 100.
  - Departures for a 2-core CPU: batch 128 (paper: 32,768), a few thousand steps (paper: 32 epochs
    of 400M pairs), warm-up 200 steps (paper 2,000), learning rate 1e-3 (paper 5e-4 at 32k batch),
    tiny towers, 32x32 images, 16-token context (the presets use 77) and the word-level tokenizer
    of `jaxpapers.data.shapes_captions` (paper: BPE with 49,152 merges).
"""

import ml_collections

from jaxpapers.train.cli import presets


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(
      embed_dim=128,
      image_tower='vit',  # vit | resnet
      vision_layers=4,  # ViT depth
      resnet_stages=(1, 1, 1, 1),  # ResNet bottleneck blocks per stage
      vision_width=128,  # ViT width, or the ResNet's stem width (its final map is 32x wider)
      vision_patch_size=8,
      vision_heads=2,  # 64-wide heads, as openai's width / 64
      text_width=128,
      text_layers=4,
      text_heads=2,
      context_length=16,  # the longest caption is 12 tokens with start and end of text
  ))
  c.data = ml_collections.ConfigDict(dict(
      name='shapes_captions',  # shapes_captions or shapes_captions_tiny (the tokenizer is theirs)
      data_dir='',
      probe_train_size=5000,  # train images the linear probes fit on
  ))
  # jit: the loss of the whole sharded batch under jax.jit; shard_map: all-gather per device.
  c.loss_impl = 'shard_map'
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=1e-3, schedule='cosine', warmup_steps=200, weight_decay=0.2,
      b1=0.9, b2=0.98, eps=1e-6, grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=3000, batch_size=128, log_every=50, eval_every=1000, checkpoint_every=500,
      max_to_keep=2))
  return c


def shapes_resnet() -> ml_collections.ConfigDict:
  c = base()
  # 32 * 16 / 64 = 8 heads over the 512-wide final feature map, as openai's ResNets.
  c.model.update(image_tower='resnet', vision_width=16, vision_heads=8)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base()
  c.model.update(embed_dim=16, vision_layers=1, vision_width=16, vision_heads=2, text_width=16,
                 text_layers=1, text_heads=2)
  c.data.update(name='shapes_captions_tiny', probe_train_size=128)
  c.optim.update(learning_rate=3e-3, warmup_steps=2)
  c.train.update(steps=12, batch_size=32, log_every=4, eval_every=12, checkpoint_every=12)
  return c


def tiny_resnet() -> ml_collections.ConfigDict:
  c = tiny()
  c.model.update(image_tower='resnet', vision_width=8, vision_heads=2)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return presets(preset, {'shapes_vit': base, 'shapes_resnet': shapes_resnet, 'tiny': tiny,
                          'tiny_resnet': tiny_resnet}, default='shapes_vit')()
