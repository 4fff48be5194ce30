"""A GPT-2-style byte-level language model on the CPython reference-manual corpus.

"Language Models are Unsupervised Multitask Learners" (Radford et al. 2019).

Presets: `small` (the default: 4 layers, width 128, 128-byte context, sized for a few minutes on
two CPU cores) and `tiny` (a few steps of a very small model, for tests).

Settings, and where they come from:
  - Model: `gpt_bytes_small`, GPT-2's architecture (pre-norm, final LayerNorm, tied embeddings,
    learned positions, N(0, 0.02 / sqrt(2 L)) residual projections) at a CPU's size; GPT-2 small
    is 12 layers, width 768, context 1024. Dropout 0.1 on residuals, embeddings and attention, as
    GPT-2's released configuration: the corpus is small (413,000 training bytes), so the run makes
    several passes.
  - Data: random 129-byte windows of the training documents at any byte offset (`train_stride`
    1); all the held-out documents in non-overlapping windows (415 windows, 53,120 bytes).
  - Optimiser: AdamW (beta2 0.99, weight decay 0.1 on matrices only), peak learning rate 2e-3 with
    100 warm-up steps and cosine decay, gradients clipped at norm 1: a common small-model recipe
    (GPT-2's paper does not give its optimiser settings).
"""

import ml_collections

from experiments.configs import select


def small() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Parameters, dropout and the order of training windows.
  c.data = ml_collections.ConfigDict(dict(
      context=128, train_stride=1,
      eval_windows=0))  # 0: every held-out window
  c.model = ml_collections.ConfigDict(dict(name='gpt_bytes_small'))  # context from data.context
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=2e-3, b1=0.9, b2=0.99, schedule='cosine', warmup_steps=100,
      weight_decay=0.1, grad_clip_norm=1.0))
  c.sample = ml_collections.ConfigDict(dict(length=96, prompt_length=32, temperature=0.8, top_k=20))
  c.evals = ml_collections.ConfigDict(dict(
      samples=dict(type='text_samples', fn='continue_prompt', seed=0)))
  c.train = ml_collections.ConfigDict(dict(
      steps=1_500, batch_size=32, log_every=100, eval_every=500, checkpoint_every=500,
      max_to_keep=2))
  return c


def tiny() -> ml_collections.ConfigDict:
  c = small()
  c.data.update(context=16, train_stride=97, eval_windows=40)
  c.model.name = 'gpt_bytes_tiny'
  c.optim.update(learning_rate=1e-2, warmup_steps=2)
  c.evals = ml_collections.ConfigDict()  # no samples
  c.train.update(steps=10, batch_size=16, log_every=5, eval_every=0, checkpoint_every=10)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'small': small, 'tiny': tiny}, default='small')
