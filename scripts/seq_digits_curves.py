"""Learning curves of BN-LSTM against LSTM on pixel-by-pixel digits (Cooijmans et al. 2016, Fig. 2).

    python scripts/seq_digits_curves.py [--runs=runs] [--out=docs/figures/bn_lstm_seq_digits.png]

Reads `<runs>/seq_digits_<preset>` (runs of `experiments/configs/sequential_digits.py:<preset>`
through `experiments.classify`) and draws training loss and test accuracy against updates, one
panel pair per task (raster order, permuted). Runs that are missing are skipped. Prints the final
and best test accuracy of each run.
"""

from __future__ import annotations

import os

import matplotlib
from absl import app, flags

from jaxpapers.train import metrics

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

_RUNS = flags.DEFINE_string('runs', 'runs', 'Folder holding the seq_digits_* workdirs.')
_OUT = flags.DEFINE_string('out', 'docs/figures/bn_lstm_seq_digits.png', 'The figure.')
SUFFIXES = {'': 'eps 1e-5', '_eps3': 'eps 1e-3'}


def main(argv):
  del argv
  fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
  for column, (task, prefix) in enumerate((('raster order', ''), ('permuted', 'p'))):
    for cell in ('lstm', 'bn_lstm'):
      for suffix, note in SUFFIXES.items():
        workdir = os.path.join(_RUNS.value, f'seq_digits_{prefix}{cell}{suffix}')
        if not os.path.isdir(workdir) or (cell == 'lstm' and suffix):
          continue
        label = 'LSTM' if cell == 'lstm' else f'BN-LSTM ({note})'
        steps, loss = metrics.read_history(workdir, 'train/')['loss']
        eval_steps, accuracy = metrics.read_history(workdir, 'eval/')['accuracy']
        axes[0, column].plot(steps, loss, label=label)
        axes[1, column].plot(eval_steps, accuracy, label=label, marker='.')
        print(f'{prefix}{cell}{suffix}: final test accuracy {accuracy[-1]:.4f}, best '
              f'{max(accuracy):.4f}, final train loss {loss[-1]:.4f}')
    axes[0, column].set_title(f'8x8 digits, pixel by pixel, {task}')
    axes[0, column].set_ylabel('training loss')
    axes[1, column].set_ylabel('test accuracy (population statistics)')
    axes[1, column].set_xlabel('updates (batch 64)')
    axes[1, column].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(_OUT.value, dpi=80)
  print('wrote', _OUT.value)


if __name__ == '__main__':
  app.run(main)
