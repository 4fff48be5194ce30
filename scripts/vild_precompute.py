"""ViLD-image's regions, precomputed once as the paper does (Gu et al. 2021, secs. 3.3 and 4): the
top M proposals per training image of an RPN trained on the base classes, and the CLIP teacher's
embeddings of their crops.

Restores a two-stage detector run of `experiments/detect.py` (detector `rcnn`; the paper's "RPN
trained on base categories" is `fasterrcnn_base_scenes`' first stage), runs its first stage at
inference settings (`MaskRCNN.inference_rois`) over the train split, keeps the M best proposals of
each image, encodes them with `vild.teacher_embeddings` (32x32 RoIAlign crops of the box scaled by
`detect.CROP_SCALES`, through CLIP's image tower) and writes `<proposals_dir>/proposals.npz`:
proposal_boxes [N, M, 4] (pixels), proposal_embeddings [N, M, D], proposal_valid [N, M], row i for
example i of the split, and the dataset's name; the `vild` detector reads it through
`--config.vild.proposals=<proposals_dir>`. Prints (and writes to `<proposals_dir>/recall.json`)
the proposals' recall of the ground-truth objects at IoU >= 0.5, per class, base and novel: the
objects ViLD-image can distill at all.

    python scripts/vild_precompute.py --detector_workdir=runs/fasterrcnn_base_scenes \
        --clip_workdir=runs/clip_shapes_vit --proposals_dir=runs/vild_proposals

(`--detector=experiments/configs/detect.py:fasterrcnn_base_scenes` is the default detector config;
its `--detector.<key>=...` overrides as the run's.)
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments import detect
from jaxpapers import zoo
from jaxpapers.data import scenes
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection import vild
from jaxpapers.errors import ConfigError
from jaxpapers.evaluators.base import load_split
from jaxpapers.train import checkpoint

# Not --config / --workdir: experiments.detect's absl app defines those.
_DETECTOR = config_flags.DEFINE_config_file(
    'detector', 'experiments/configs/detect.py:fasterrcnn_base_scenes',
    "The detector run's config (its model and data; detector `rcnn`).")
_DETECTOR_WORKDIR = flags.DEFINE_string('detector_workdir', 'runs/fasterrcnn_base_scenes',
                                        'The detector run.')
_CLIP = flags.DEFINE_string('clip', 'clip_shapes_vit', "The teacher's zoo model.")
_CLIP_WORKDIR = flags.DEFINE_string('clip_workdir', 'runs/clip_shapes_vit', 'The CLIP run.')
_NUM = flags.DEFINE_integer('num_proposals', 8, 'M: proposals kept per image.')
# Names no other script defines: tests import this module beside scripts/convert.py (--out).
_BATCH = flags.DEFINE_integer('images_per_call', 100, 'Images per jitted call.')
_OUT = flags.DEFINE_string('proposals_dir', 'runs/vild_proposals', 'Output directory.')


def precompute(config: ml_collections.ConfigDict, workdir: str, clip: str, clip_workdir: str,
               num_proposals: int = 8, batch_size: int = 100) -> dict[str, np.ndarray]:
  """The proposals, their teacher embeddings and validity of every example of the train split
  (module docstring), and the ground truth's 'labels' [N, G] and 'covered' [N, G] (IoU >= 0.5
  with a valid proposal)."""
  if config.detector != 'rcnn':
    raise ConfigError(f'config.detector={config.detector!r}: the proposals come from a two-stage '
                      "detector run (detector 'rcnn', e.g. fasterrcnn_base_scenes)")
  model = zoo.build_from_config(config.model)
  variables = jax.tree.map(jnp.asarray, checkpoint.load_variables(workdir))
  _, encode_crops = detect.clip_teacher(ml_collections.ConfigDict({'name': clip}), clip_workdir)
  data = load_split(config.data.name, config.data.train_split, config.data.data_dir,
                    ('image', 'boxes', 'labels'))

  @jax.jit
  def propose_and_embed(variables, images, gt_boxes):
    _, rois, valid = model.apply(variables, images, method='inference_rois')
    boxes, valid = rois[:, :num_proposals], valid[:, :num_proposals]
    embeddings = vild.teacher_embeddings(encode_crops, images, boxes, detect.CROP_SIZE,
                                         detect.CROP_SCALES)
    overlaps = jax.vmap(box_lib.iou)(gt_boxes, boxes)  # [B, G, M]
    covered = jnp.any((overlaps >= 0.5) & valid[:, None], -1)
    return boxes, embeddings, valid, covered

  n = len(data['image'])
  batch_size = min(batch_size, n)
  outputs = []
  for start in range(0, n, batch_size):  # the last batch padded to the same shape: one compile
    chunk = slice(start, min(start + batch_size, n))
    images = np.zeros((batch_size, *data['image'].shape[1:]), np.float32)
    gt_boxes = np.zeros((batch_size, *data['boxes'].shape[1:]), np.float32)
    images[:chunk.stop - start] = data['image'][chunk] / 255.0
    gt_boxes[:chunk.stop - start] = data['boxes'][chunk]
    outputs.append([np.asarray(x)[:chunk.stop - start]
                    for x in propose_and_embed(variables, images, gt_boxes)])
    print(f'{chunk.stop} of {n} images', flush=True)
  boxes, embeddings, valid, covered = (np.concatenate(x) for x in zip(*outputs))
  return {'proposal_boxes': boxes, 'proposal_embeddings': embeddings, 'proposal_valid': valid,
          'labels': data['labels'], 'covered': covered}


def recall(labels: np.ndarray, covered: np.ndarray) -> dict[str, float]:
  """The fraction of ground-truth objects covered, per class and over the base and novel ones."""
  groups = {name: [c] for c, name in enumerate(scenes.CLASSES)}
  groups['base'] = [scenes.CLASSES.index(name) for name in scenes.BASE_CLASSES]
  groups['novel'] = scenes.novel_class_ids()
  groups['all'] = list(range(len(scenes.CLASSES)))
  out = {}
  for name, ids in groups.items():
    objects = np.isin(labels, ids)
    out[name] = float(covered[objects].mean()) if objects.any() else float('nan')
  return out


def run(config: ml_collections.ConfigDict, workdir: str, clip: str, clip_workdir: str,
        num_proposals: int, batch_size: int, out: str) -> dict[str, np.ndarray]:
  """`precompute`, written to `out` (module docstring), its recall printed; returns `precompute`'s
  arrays and 'recall'."""
  result = precompute(config, workdir, clip, clip_workdir, num_proposals, batch_size)
  os.makedirs(out, exist_ok=True)
  np.savez(os.path.join(out, detect.PROPOSALS_FILE),
           **{name: result[name] for name in detect.PROPOSAL_FEATURES},
           dataset=np.str_(config.data.name))
  rates = recall(result['labels'], result['covered'])
  with open(os.path.join(out, 'recall.json'), 'w') as f:
    json.dump({'num_proposals': num_proposals, 'iou': 0.5, 'recall': rates}, f, indent=1)
  shape = result['proposal_embeddings'].shape
  print(f'{shape[0]} images x {shape[1]} proposals, embeddings of {shape[2]} -> {out}')
  print('recall of the ground-truth objects at IoU >= 0.5:')
  for name, rate in rates.items():
    print(f'  {name:9s} {rate:.3f}')
  return {**result, 'recall': rates}


def main(argv) -> None:
  del argv
  run(_DETECTOR.value, _DETECTOR_WORKDIR.value, _CLIP.value, _CLIP_WORKDIR.value, _NUM.value,
      _BATCH.value, _OUT.value)


if __name__ == '__main__':
  app.run(main)
