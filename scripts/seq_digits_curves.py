"""Learning curves of BN-LSTM against LSTM on pixel-by-pixel digits (Cooijmans et al. 2016, Fig. 2).

    python scripts/seq_digits_curves.py [--runs=runs] [--out=docs/figures/bn_lstm_seq_digits.png]

Reads `<runs>/seq_digits_<preset>` (runs of `experiments/configs/sequential_digits.py:<preset>`
through `experiments.classify`) and draws training loss and test accuracy against updates, one
panel pair per task (raster order, permuted). Runs that are missing are skipped. Prints the final
and best test accuracy of each run, and for each BN-LSTM run the final test accuracy again with
the statistics of each test batch of 64 instead of the population statistics (the BN in
training mode; nothing is updated), to tell a mismatch of the population statistics from
a model that did not learn; and with per-step statistics recomputed in one pass over the whole
training set with the final weights, to tell running averages that lag the weights from
statistics that do not transfer at all.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags

from experiments import classify
from experiments.configs import sequential_digits
from jaxpapers.train import checkpoint, devices, metrics

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

_RUNS = flags.DEFINE_string('runs', 'runs', 'Folder holding the seq_digits_* workdirs.')
_OUT = flags.DEFINE_string('out', 'docs/figures/bn_lstm_seq_digits.png', 'The figure.')
SUFFIXES = {'': 'eps 1e-5', '_eps3': 'eps 1e-3'}


def accuracies(workdir: str, preset: str, epsilon: float) -> tuple[float, float, float]:
  """Test accuracy of a finished BN-LSTM run with (its population statistics, each test batch's
  statistics, statistics recomputed on the whole training set with the final weights)."""
  config = sequential_digits.get_config(preset)
  config.model.bn_epsilon = epsilon
  experiment = classify.Classify(config, devices.make_mesh())
  abstract = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  checkpointer = checkpoint.Checkpointer(workdir)
  try:
    state = checkpointer.restore_latest(abstract)[1]
  finally:
    checkpointer.close()
  variables = {'params': state.params, **state.model_state}
  model = experiment.model
  population = jax.jit(lambda x: model.apply(variables, x, train=False))
  batch = jax.jit(lambda x: model.apply(variables, x, train=True, mutable=['batch_stats'])[0])
  # Momentum 0: the running averages become the statistics of this one pass over the train set.
  train_images = np.stack([np.asarray(ex['image']) for ex in experiment.data.train])
  _, fresh = model.clone(bn_momentum=0.0).apply(variables, jnp.asarray(train_images), train=True,
                                                mutable=['batch_stats'])
  recomputed_vars = {'params': state.params, **fresh}
  recomputed = jax.jit(lambda x: model.apply(recomputed_vars, x, train=False))
  right = {'population': 0, 'batch': 0, 'recomputed': 0}
  count = 0
  for b in experiment.eval_data():
    mask = np.asarray(b['mask']) > 0
    for name, fn in (('population', population), ('batch', batch), ('recomputed', recomputed)):
      predictions = np.asarray(jnp.argmax(fn(jnp.asarray(b['image'])), -1))
      right[name] += int(np.sum((predictions == np.asarray(b['label']))[mask]))
    count += int(mask.sum())
  return tuple(right[k] / count for k in ('population', 'batch', 'recomputed'))


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
        if cell == 'bn_lstm':
          pop, bat, fresh = accuracies(workdir, f'{prefix}{cell}', 1e-3 if suffix else 1e-5)
          print(f'  population statistics {pop:.4f}, test-batch statistics {bat:.4f}, '
                f'recomputed on the training set {fresh:.4f}')
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
