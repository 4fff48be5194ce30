"""Gatys' optimisation against Johnson's network on the test photograph: losses reached, time per image.

    python scripts/style_table.py --gatys=runs/gatys --johnson=runs/johnson

Both runs' final evaluations (experiments/style_transfer.py) hold the same numbers: Gatys' and
Johnson's losses of the result on the test photograph. Time per image: for Gatys, the optimisation
itself (steps times the measured time per step, compilation excluded); for
Johnson, one forward pass of the trained network on the photograph, measured here (jitted, after
a warm-up call, median of `--repeats`).
"""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from experiments import style_transfer
from jaxpapers.train import checkpoint, devices, metrics

FLAGS = flags.FLAGS
flags.DEFINE_string('gatys', 'runs/gatys', 'workdir of a finished style_transfer gatys run')
flags.DEFINE_list('johnson', ['runs/johnson'], 'workdirs of finished style_transfer johnson runs')
flags.DEFINE_integer('repeats', 5, 'timed forward passes of the network')

COLUMNS = ('gatys_content_loss', 'gatys_style_loss', 'gatys_total', 'johnson_content_loss',
           'johnson_style_loss', 'johnson_total')


def _results(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def optimisation_seconds(workdir: str) -> float:
  """Seconds of the run's train steps: its step count times the mean time per step of the log
  windows after the first (whose rate includes the compilation)."""
  steps, rates = metrics.read_history(workdir, 'train/')['steps_per_second']
  windows = np.diff(np.concatenate([[0], steps]))[1:]
  return float(steps[-1] * np.sum(windows / rates[1:]) / np.sum(windows))


def network_seconds(workdir: str, repeats: int) -> float:
  results = _results(workdir)
  config = ml_collections.ConfigDict(results['config'])
  experiment = style_transfer.StyleTransfer(config, devices.make_mesh())
  state = jax.eval_shape(experiment.init, jax.random.key(0))
  params = jax.tree.map(np.asarray, checkpoint.load_state(workdir)['params'])
  state = state.replace(params=params)
  stylise = jax.jit(experiment.stylise)
  jax.block_until_ready(stylise(state))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(stylise(state))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv):
  del argv
  rows = {f'Gatys, {FLAGS.gatys}': (_results(FLAGS.gatys), optimisation_seconds(FLAGS.gatys))}
  for workdir in FLAGS.johnson:
    rows[f'Johnson, {workdir}'] = (_results(workdir), network_seconds(workdir, FLAGS.repeats))
  print('| method | steps | ' + ' | '.join(COLUMNS) + ' | seconds per image |')
  print('|---' * (len(COLUMNS) + 3) + '|')
  for name, (results, seconds) in rows.items():
    cells = ' | '.join(f'{results["eval"][c]:.4g}' for c in COLUMNS)
    print(f'| {name} | {results["step"]} | {cells} | {seconds:.3g} |')


if __name__ == '__main__':
  app.run(main)
