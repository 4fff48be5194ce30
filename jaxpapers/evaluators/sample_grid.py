"""A grid of generated images after each evaluation: `<workdir>/samples/step_<N>.png` and TensorBoard.

The same key at every evaluation, so successive grids show how training changes the samples of the
same latents (or noise). `fn(state, key, num_images)` returns images in [0, 1], [N, H, W, C]; for a
class-conditional model it lays class c in row c when it draws classes that way.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxpapers.evaluators.base import Evaluator
from jaxpapers.train import metrics


class SampleGrid(Evaluator):
  defaults = {'num_images': 64, 'num_rows': 0, 'seed': 0, 'scale': 2}

  def __call__(self, state, step, writer):
    c = self.config
    images = self.fn(state, jax.random.PRNGKey(c['seed']), c['num_images'])
    images = np.asarray(multihost_utils.process_allgather(images, tiled=True))
    if jax.process_index() == 0:
      grid = metrics.image_grid(images, c['num_rows'] or None)
      metrics.save_png(grid, f'{writer.workdir}/samples/step_{step}.png', scale=c['scale'])
      writer.image(step, 'samples', grid)
    return {}
