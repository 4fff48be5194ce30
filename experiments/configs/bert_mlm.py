"""BERT pre-training (masked LM + NSP) on the CPython reference-manual corpus, byte-level.

"BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding" (Devlin et al.
2018, arXiv:1810.04805).

Presets: `small` (the default: 4 layers, width 128, 128-token sequences, a few minutes on two CPU
cores) and `tiny` (a few steps of a very small model, for tests).

Settings, and where they come from:
  - Model: `bert_bytes_small`, BERT's architecture (post-norm, GELU, learned positions and
    segments, MLM head tied to the word embeddings, NSP head on the pooled [CLS]) at a CPU's size;
    BERT_BASE is 12 layers, width 768. Dropout 0.1 as in the paper.
  - Masking: 15% of the tokens, 80/10/10 (section 3.1); evaluation masks from `mask.eval_seed`.
  - Data: two 62-byte segments per 127-token example; training examples start every 16 bytes.
  - Optimiser: AdamW (weight decay 0.01 on matrices, as the paper's 0.01 L2), peak learning rate
    1e-3 (the paper's 1e-4 is for a far larger batch and model), 100 warm-up steps, cosine decay.
"""

import ml_collections

from experiments.configs import select


def small() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Parameters, dropout, masks and the order of training examples.
  c.data = ml_collections.ConfigDict(dict(
      segment=62, train_stride=16,
      seed=0,  # The random second segments of NSP.
      eval_examples=0))  # 0: every held-out example
  c.mask = ml_collections.ConfigDict(dict(prob=0.15, eval_seed=0))
  c.model = ml_collections.ConfigDict(dict(name='bert_bytes_small'))  # length from data.segment
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=1e-3, b1=0.9, b2=0.999, schedule='cosine', warmup_steps=100,
      weight_decay=0.01, grad_clip_norm=1.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=1_500, batch_size=32, log_every=100, eval_every=500, checkpoint_every=500,
      max_to_keep=2))
  return c


def tiny() -> ml_collections.ConfigDict:
  c = small()
  c.data.update(segment=6, train_stride=101, eval_examples=40)
  c.model.name = 'bert_bytes_tiny'
  c.optim.update(learning_rate=1e-2, warmup_steps=2)
  c.train.update(steps=10, batch_size=16, log_every=5, eval_every=0, checkpoint_every=10)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'small': small, 'tiny': tiny}, default='small')
