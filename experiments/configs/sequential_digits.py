"""Pixel-by-pixel digits with BN-LSTM and LSTM (Cooijmans et al. 2016, section 5.1), via `classify`.

"Recurrent Batch Normalization", Cooijmans, Ballas, Laurent, Gulcehre, Courville 2016,
arXiv:1603.09025. Run with the generic classification experiment:

    python -m experiments.classify --config=experiments/configs/sequential_digits.py:bn_lstm \
        --workdir=runs/seq_digits_bn_lstm

Presets: `lstm`, `bn_lstm` (pixels in raster order), `plstm`, `pbn_lstm` (one fixed permutation of
the pixels), and `tiny` (a few steps, for tests).

Settings, and where they come from:
  - Data: the offline 8x8 digits (`sklearn_digits`, 1,437 train / 360 test): one grey value per
    step, 64 steps. The paper's MNIST has 784 steps; 64 is what a CPU can scan in minutes.
  - Model: one layer of 100 units, its last state into a 10-way softmax (section 5.1); BN-LSTM
    with gamma = 0.1 and per-step statistics (`jaxpapers.recurrent.bn_lstm`).
  - Optimiser: the paper uses RMSprop with learning rate 1e-3 and batch 64; we use Adam with 1e-3
    (constant), batch 64, gradient norm clipped at 1.0 as a guard; no augmentation.
"""

import ml_collections

from experiments.configs import classify, select


def base(cell: str = 'bn_lstm', permute: bool = False) -> ml_collections.ConfigDict:
  c = classify.base()
  # BN settings are the preset's defaults (read by the BN-LSTM only), here so flags can set them.
  c.model = ml_collections.ConfigDict(dict(name=f'digits_pixel_{"p" if permute else ""}{cell}',
                                           bn_momentum=0.99, bn_epsilon=1e-5))
  c.data.augment.random_crop_padding = 0
  c.optim = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=1e-3, schedule='constant', warmup_steps=0, grad_clip_norm=1.0))
  c.train.update(steps=1500, batch_size=64, log_every=50, eval_every=100, checkpoint_every=500)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base('bn_lstm', permute=True)
  c.model.hidden_size = 8
  c.train.update(steps=6, batch_size=16, log_every=3, eval_every=6, checkpoint_every=6)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'lstm': lambda: base('lstm'), 'bn_lstm': lambda: base('bn_lstm'),
                         'plstm': lambda: base('lstm', True), 'pbn_lstm': lambda: base('bn_lstm', True),
                         'tiny': tiny}, default='bn_lstm')
