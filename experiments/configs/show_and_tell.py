"""Show and Tell (Vinyals et al. 2014, arXiv:1411.4555) on the offline captioned shapes.

Presets: `shapes` (the default: a few minutes on CPU) and `tiny` (a few steps, for tests).

Settings, and where they come from:
  - Data: `shapes_captions` (30,000 training pairs; BLEU on 500 validation images, seen
    colour-shape pairs); captions tokenised by its word tokenizer, 14 tokens with start and end.
  - Model: `show_and_tell_shapes` (small convnet encoder trained from scratch, its pooled
    features batch-normalised, 128-wide word and image embeddings, LSTM of 256; dropout 0.3).
  - Optimiser: the paper trains with plain SGD and a fixed learning rate; we use Adam 1e-3 with a
    cosine schedule, batch 64, gradient norm clipped at 5, for a CPU budget.
  - Beam size 3 (the journal version's best on COCO).
"""

import ml_collections

from experiments.configs import select


def shapes() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name='show_and_tell_shapes'))
  c.data = ml_collections.ConfigDict(dict(name='shapes_captions', data_dir='',
                                          eval_split='validation', context=14))
  c.beam_size = 3
  c.optim = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='cosine', warmup_steps=50, grad_clip_norm=5.0))
  c.evals = ml_collections.ConfigDict(dict(
      bleu=dict(type='caption_bleu', fn='caption', num_images=500, train_size=5000)))
  c.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500,
      max_to_keep=2))
  return c


def tiny() -> ml_collections.ConfigDict:
  c = shapes()
  c.model.update(embed_dim=16, hidden_size=16)
  c.data.name = 'shapes_captions_tiny'
  c.evals.bleu.update(dataset='shapes_captions_tiny', num_images=32, train_size=64,
                      batch_size=32)
  c.optim.warmup_steps = 2
  c.train.update(steps=4, batch_size=16, log_every=2, eval_every=4, checkpoint_every=4)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'shapes': shapes, 'tiny': tiny}, default='shapes')
