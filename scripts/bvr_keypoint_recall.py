"""Do a trained RelationNet++ (`retinanet_bvr_scenes`) run's keys find the objects' points?

    python scripts/bvr_keypoint_recall.py runs/det_retinanet_bvr

On the scenes test split, per key type (top-left, bottom-right, centre): the fraction of
ground-truth points with one of the 50 selected keys (location + predicted offset) within 4 pixels
(one P2 stride), against 50 random locations; and the precision of the heatmap's top keys (as many
as the image has objects): the fraction within 4 pixels of a ground-truth point. Then the box AP
of the trained weights as they are and with BVR's attention outputs zeroed (its output
projections set to 0: the base RetinaNet path of the same weights), to see how much the trained
detector relies on the keys.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments import detect
from experiments.configs import detect as configs
from jaxpapers.detection import relationnet_pp as rpp
from jaxpapers.evaluators import detection
from jaxpapers.evaluators.base import load_split
from jaxpapers.train import checkpoint, devices

RADIUS = 4.0


def _near(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """[K, M]: key k within RADIUS of ground-truth point m."""
  return np.linalg.norm(found[:, None] - truth[None], axis=-1) <= RADIUS


def main(workdir: str) -> None:
  exp = detect.Detect(configs.get_config('retinanet_bvr_scenes'), devices.make_mesh())
  variables = checkpoint.load_variables(workdir)
  points, strides = rpp.location_points(exp.model.levels())
  apply = jax.jit(lambda v, x: exp.model.apply(v, x, train=False))
  rng = np.random.default_rng(0)
  recall, chance, precision = ({t: [] for t in rpp.KEY_TYPES} for _ in range(3))
  for batch in exp.data.eval_batches(100):
    out = apply(variables, jnp.asarray(batch['image']))
    for i in np.flatnonzero(batch['mask']):
      valid = batch['labels'][i] >= 0
      x0, y0, x1, y1 = np.asarray(batch['boxes'][i][valid]).T
      truth = {'top_left': np.stack([x0, y0], -1), 'bottom_right': np.stack([x1, y1], -1),
               'centre': np.stack([(x0 + x1) / 2, (y0 + y1) / 2], -1)}
      for t, key_type in enumerate(rpp.KEY_TYPES):
        order = np.argsort(-np.asarray(out['keypoint_logits'][i, :, t]).max(-1))
        found = points + np.asarray(out['keypoint_offsets'][i, :, t]) * strides[:, None]
        random = points[rng.choice(len(points), 50, replace=False)]
        recall[key_type] += list(_near(found[order[:50]], truth[key_type]).any(0))
        chance[key_type] += list(_near(random, truth[key_type]).any(0))
        precision[key_type] += list(_near(found[order[:valid.sum()]], truth[key_type]).any(1))
  report(recall, chance, precision)
  data = load_split('scenes', 'test', '', ('image', 'boxes', 'labels'))
  gt = [{'boxes': b[lb >= 0], 'labels': lb[lb >= 0]} for b, lb in zip(data['boxes'], data['labels'])]
  detect_fn = jax.jit(lambda v, x: exp.model.detections(exp.model.apply(v, x, train=False)))
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, x: np.zeros_like(x) if "'out'" in jax.tree_util.keystr(path) else x, variables)
  for name, v in (('as trained', variables), ('BVR outputs zeroed', zeroed)):
    found = np.concatenate([detect_fn(v, data['image'][i:i + 100].astype(np.float32) / 255.0)
                            for i in range(0, len(data['image']), 100)])
    found = [{'boxes': d[d[:, 4] > 0, :4], 'scores': d[d[:, 4] > 0, 4],
              'labels': d[d[:, 4] > 0, 5].astype(np.int64)} for d in found]
    print(name, detection.coco_map(gt, found, 5, image_size=data['image'].shape[1:3]))


def report(recall, chance, precision) -> None:
  for t in rpp.KEY_TYPES:
    print(f'{t}: recall of the 50 keys {np.mean(recall[t]):.3f} (50 random locations '
          f'{np.mean(chance[t]):.3f}), precision of the top keys {np.mean(precision[t]):.3f}, '
          f'{len(recall[t])} points')


if __name__ == '__main__':
  main(sys.argv[1])
