"""Quality over training of `experiments/gan.py` runs: a Markdown table and a plot of the curves.

    python scripts/gan_table.py --run_dirs=runs/gan_digits,runs/cgan_digits \
        --steps=2000,10000,20000 --plot=docs/figures/gan_quality_curves.png

For each run (the config is read from its results.json), the table has the `sample_quality`
metrics logged at the chosen evaluation steps (the generator and its EMA) beside two rows measured
here through the same classifier and reference statistics: the run's untrained generator (its
`init` state, seed of the run) and real held-out images (the dataset's eval split; for a
conditional run, their true labels give the classifier's own accuracy).
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
from absl import app, flags

from experiments import gan
from jaxpapers import evaluators
from jaxpapers.evaluators import base as evaluators_base
from jaxpapers.evaluators import sample_quality
from jaxpapers.train import checkpoint, devices, metrics

FLAGS = flags.FLAGS
flags.DEFINE_list('run_dirs', [], 'workdirs of finished experiments/gan.py runs')
flags.DEFINE_list('steps', [], 'evaluation steps shown (default: every logged one)')
flags.DEFINE_string('plot', '', 'where to write the figure of the curves (PNG)')
flags.DEFINE_string('grid_dir', '', 'if set, writes <run>_samples.png and <run>_ema_samples.png of '
                    'the final checkpoint there (the config\'s grid: same key, size and rows)')

COLUMNS = ('frechet_distance', 'classifier_score', 'classes_found', 'class_accuracy')


def _cell(value):
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return ''
  return f'{value:.0f}' if float(value).is_integer() and value < 100 else f'{value:.3g}'


def _row(name, raw, ema=None):
  cells = []
  for column in COLUMNS:
    cell = _cell(raw.get(column))
    if ema is not None and cell:
      cell += f' / {_cell(ema.get(column))}'
    cells.append(cell)
  return f'| {name} | ' + ' | '.join(cells) + ' |'


def run_table(run_dir: str, steps: list[int]) -> tuple[list[str], dict]:
  with open(os.path.join(run_dir, 'results.json')) as f:
    results = json.load(f)
  config = ml_collections.ConfigDict(results['config'])
  mesh = devices.make_mesh()
  experiment = gan.GAN(config, mesh)
  history = metrics.read_history(run_dir, 'eval/')
  quality = {name: entry for name, entry in config.evals.items() if entry.type == 'sample_quality'}
  built = evaluators.build(quality, experiment.evaluation_fns(), mesh)
  raw_name = 'quality'
  ema_name = 'quality_ema' if 'quality_ema' in quality else None
  lines = [f'{os.path.basename(run_dir.rstrip("/"))}: FD / score / classes found'
           f'{" / class accuracy" if config.gan.conditional else ""}'
           f'{" (generator / EMA generator)" if ema_name else ""}', '',
           '| | ' + ' | '.join(COLUMNS) + ' |', '|---|' + '---:|' * len(COLUMNS)]

  # Real held-out images, through the same classifier and reference statistics.
  entry, evaluator = quality[raw_name], built[raw_name]
  keys = ('image', 'label') if config.gan.conditional else ('image',)
  real = evaluators_base.load_split(entry.dataset, config.data.eval_split, entry.get('data_dir', ''),
                                    keys)
  real_metrics = sample_quality.sample_metrics(
      evaluator.classifier, real['image'].astype(np.float32) / 255.0, evaluator.reference,
      real.get('label'))
  lines.append(_row(f'real held-out images ({len(real["image"])}, {config.data.eval_split})',
                    real_metrics))
  # The untrained generator: the run's initial state.
  state = jax.jit(experiment.init, out_shardings=devices.replicated(mesh))(
      jax.random.PRNGKey(config.seed))
  untrained = {name: built[name](state, 0, None) for name in built}
  lines.append(_row('untrained generator (step 0)', untrained[raw_name],
                    untrained.get(ema_name) if ema_name else None))

  logged = history[f'{raw_name}_frechet_distance'][0]
  for step in steps or logged.tolist():
    if step not in logged:
      continue
    def at(prefix, step=step):
      return {c: float(history[f'{prefix}_{c}'][1][list(history[f'{prefix}_{c}'][0]).index(step)])
              for c in COLUMNS if f'{prefix}_{c}' in history}
    lines.append(_row(f'step {step}', at(raw_name), at(ema_name) if ema_name else None))
  if FLAGS.grid_dir:
    _final_grids(experiment, run_dir, config, mesh)
  if config.gan.conditional:
    final = int(logged[-1])
    for prefix in (raw_name, ema_name) if ema_name else (raw_name,):
      per_class = [history[f'{prefix}_class_accuracy_{c}'][1][-1]
                   for c in range(experiment.num_classes)]
      lines.append(f'\n{prefix} per-class accuracy at step {final}: '
                   + ' '.join(f'{c}: {a:.2f}' for c, a in enumerate(per_class)))
  return lines, history


def _final_grids(experiment, run_dir, config, mesh):
  abstract = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                         sharding=devices.replicated(mesh)), abstract)
  checkpointer = checkpoint.Checkpointer(run_dir)
  _, state, _ = checkpointer.restore_latest(abstract)
  checkpointer.close()
  grid = config.evals.samples
  name = os.path.basename(run_dir.rstrip('/'))
  fns = experiment.evaluation_fns()
  for fn, suffix in (('sample', ''), ('sample_ema', '_ema')):
    if fn in fns:
      images = np.asarray(fns[fn](state, jax.random.PRNGKey(grid.seed), grid.num_images))
      path = os.path.join(FLAGS.grid_dir, f'{name}{suffix}_samples.png')
      metrics.save_png(metrics.image_grid(images, grid.get('num_rows', 0) or None), path,
                       scale=grid.scale)
      print(f'grid: {path}')


def plot(histories: dict[str, dict], path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  panels = ('frechet_distance', 'classifier_score', 'classes_found')
  figure, axes = plt.subplots(1, len(panels), figsize=(15, 4))
  for (name, history), colour in zip(histories.items(), plt.cm.tab10.colors):
    for prefix, style in (('quality', '-'), ('quality_ema', '--')):
      for axis, panel in zip(axes, panels):
        if f'{prefix}_{panel}' in history:
          steps, values = history[f'{prefix}_{panel}']
          label = f'{name}{" EMA" if prefix.endswith("ema") else ""}'
          axis.plot(steps, values, style, color=colour, label=label, marker='.')
  for axis, panel in zip(axes, panels):
    axis.set(xlabel='step (round)', title=panel, yscale='log' if panel == 'frechet_distance' else
             'linear')
    axis.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


def main(argv):
  del argv
  steps = [int(s) for s in FLAGS.steps]
  histories = {}
  for run_dir in FLAGS.run_dirs:
    lines, histories[os.path.basename(run_dir.rstrip('/'))] = run_table(run_dir, steps)
    print('\n'.join(lines) + '\n', flush=True)
  if FLAGS.plot:
    plot(histories, FLAGS.plot)
    print(f'plot: {FLAGS.plot}')


if __name__ == '__main__':
  app.run(main)
