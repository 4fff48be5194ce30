"""The Transformer (Vaswani et al. 2017, arXiv:1706.03762) on synthetic transduction tasks.

Presets: `copy`, `reverse` (the default) and `sort`: strings of 8 to 16 symbols out of 10; `tiny`
(a few steps of a very small model, for tests).

Settings, and where they come from:
  - Model: `transformer_small`, the paper's architecture (post-norm, shared embeddings,
    sinusoidal positions, dropout 0.1) scaled down to a CPU: 2 + 2 layers, d_model 128, 4 heads,
    d_ff 512 (base: 6 + 6, 512, 8, 2048).
  - Loss: label smoothing 0.1 (section 5.4).
  - Optimiser: Adam with beta1 0.9, beta2 0.98, eps 1e-9 and eq. 3's schedule, lrate =
    d_model^-0.5 min(step^-0.5, step warmup^-1.5) (section 5.3): `optim.learning_rate` holds the
    d_model^-0.5 factor (0.0884 for d_model 128; set it again for a wider model).
    The warm-up is 400 steps instead of the paper's 4,000, for runs of a few thousand steps.
  - Decoding: beam size 4, length penalty alpha 0.6 (section 6.1), and greedy decoding.
  - Data: 100,000 training strings and 1,000 validation strings, seed 0.
"""

import ml_collections

from experiments.configs import select


def base(task: str = 'reverse') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Parameters, dropout and the order of training batches.
  c.data = ml_collections.ConfigDict(dict(
      task=task,  # copy | reverse | sort
      seed=0,  # The strings.
      num_symbols=10, min_len=8, max_len=16, train_size=100_000, eval_size=1_000))
  c.model = ml_collections.ConfigDict(dict(name='transformer_small'))  # vocabulary from the task
  c.loss = ml_collections.ConfigDict(dict(label_smoothing=0.1))
  c.decode = ml_collections.ConfigDict(dict(beam_size=4, alpha=0.6))
  c.optim = ml_collections.ConfigDict(dict(
      name='adam', b1=0.9, b2=0.98, eps=1e-9, schedule='warmup_rsqrt',
      learning_rate=128 ** -0.5, warmup_steps=400, grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=3_000, batch_size=64, log_every=100, eval_every=1_000, checkpoint_every=1_000,
      max_to_keep=2))
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base('reverse')
  c.data.update(num_symbols=4, min_len=2, max_len=4, train_size=256, eval_size=40)
  c.model.name = 'transformer_tiny'
  c.optim.update(learning_rate=16 ** -0.5, warmup_steps=5)
  c.train.update(steps=10, batch_size=16, log_every=5, eval_every=0, checkpoint_every=10)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'copy': lambda: base('copy'), 'reverse': lambda: base('reverse'),
                          'sort': lambda: base('sort'), 'tiny': tiny}, default='reverse')
