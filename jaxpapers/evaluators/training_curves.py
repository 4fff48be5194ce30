"""A figure of training metrics over steps, redrawn after each evaluation from metrics.jsonl.

Config: `metrics`, the train metrics to draw (one panel each, in order); `log_scale`, those drawn
on a log axis; `file`, the PNG's name in the workdir.
"""

from __future__ import annotations

import jax
from etils import epath

from jaxpapers.evaluators.base import Evaluator
from jaxpapers.train import metrics as metrics_lib


class TrainingCurves(Evaluator):
  defaults = {'metrics': ('loss',), 'log_scale': (), 'file': 'training_curves.png'}

  def __call__(self, state, step, writer):
    if jax.process_index() == 0:
      plot(writer.workdir, self.config['metrics'], self.config['log_scale'],
           f'{writer.workdir}/{self.config["file"]}')
    return {}


def plot(workdir: str, names, log_scale, path: str) -> str:
  import matplotlib  # imported here: only the plot needs it.
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  history = metrics_lib.read_history(workdir, 'train/')
  figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
  for axis, name in zip(axes[0], names):
    axis.plot(*history[name])
    axis.set(xlabel='step', ylabel=name, title=f'train {name} (per log window)',
             yscale='log' if name in log_scale else 'linear')
    axis.grid(alpha=0.3)
  figure.tight_layout()
  with epath.Path(path).open('wb') as f:
    figure.savefig(f, format='png', dpi=100)
  plt.close(figure)
  return path
