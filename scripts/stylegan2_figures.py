"""Style-mixing grid and truncation sweep of a trained `experiments/stylegan2.py` run.

    python scripts/stylegan2_figures.py --config=experiments/configs/stylegan2.py:shapes_limited_ada \
        --run_dir=runs/shapes_limited_ada --out_dir=docs/figures

Mixing (StyleGAN sec. 3.1): cell (i, j) takes the ws of layers < cutoff from row i's z and the rest
from column j's z; row 0 and column 0 show the unmixed images. Truncation (StyleGAN sec. 3.2):
w' = w_avg + psi (w - w_avg) for psi in PSIS, one z per row. Both use the EMA generator.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import gan as gan_experiment
from experiments import stylegan2 as experiment_lib
from jaxpapers.train import checkpoint, devices, metrics

flags.DEFINE_string('run_dir', None, 'workdir of the run')
flags.DEFINE_string('out_dir', 'docs/figures', 'where the PNGs go')
flags.DEFINE_integer('num', 5, 'latents per axis')
flags.DEFINE_integer('cutoff', 2, 'first layer whose w comes from the column latent')
FLAGS = flags.FLAGS
PSIS = (-1.0, -0.5, 0.0, 0.5, 0.75, 1.0)


def main(argv):
  del argv
  config = FLAGS.config  # the --config flag of jaxpapers.train.cli (imported by the experiment)
  mesh = devices.make_mesh()
  experiment = experiment_lib.StyleGAN2(config, mesh)
  abstract = jax.eval_shape(experiment.init, jax.random.PRNGKey(0))
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                         sharding=devices.replicated(mesh)), abstract)
  checkpointer = checkpoint.Checkpointer(FLAGS.run_dir)
  _, state, _ = checkpointer.restore_latest(abstract)
  checkpointer.close()
  player = state.players['generator']
  variables = {'params': player.ema_params, **player.model_state}
  g = experiment.generator
  n = FLAGS.num
  rows, cols = jax.random.normal(jax.random.PRNGKey(0), (2, n, g.z_dim))

  def images_of(ws):
    return gan_experiment.to_unit_range(g.apply(variables, ws, method='synthesize'))

  w_rows = g.apply(variables, rows, method='mapping_ws')
  w_cols = g.apply(variables, cols, method='mapping_ws')
  layer = jnp.arange(g.num_ws)[None, None, :, None]
  mixed = jnp.where(layer < FLAGS.cutoff, w_rows[:, None], w_cols[None, :])  # [n, n, L, D]
  blank = jnp.ones((1, *experiment.image_shape))
  grid = [jnp.concatenate([blank, images_of(w_cols)])]
  row_images = images_of(w_rows)
  for i in range(n):
    grid.append(jnp.concatenate([row_images[i:i + 1], images_of(mixed[i])]))
  name = os.path.basename(FLAGS.run_dir.rstrip('/'))
  path = os.path.join(FLAGS.out_dir, f'{name}_style_mixing.png')
  metrics.save_png(metrics.image_grid(np.asarray(jnp.concatenate(grid)), n + 1), path, scale=2)
  print(f'mixing: {path}')
  sweep = [images_of(g.apply(variables, rows, psi, method='mapping_ws')) for psi in PSIS]
  sweep = jnp.stack(sweep, axis=1).reshape(-1, *experiment.image_shape)  # row = z, column = psi
  path = os.path.join(FLAGS.out_dir, f'{name}_truncation.png')
  metrics.save_png(metrics.image_grid(np.asarray(sweep), n), path, scale=2)
  print(f'truncation (psi {PSIS}): {path}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'run_dir'])
  app.run(main)
