"""COCO box and mask mAP of a detector, through `pycocotools` (the field's reference evaluation).

Ground truth and detections are turned into COCO's in-memory structures (boxes as [x, y, width,
height], masks as run-length encodings from `pycocotools.mask.encode`) and scored by `COCOeval`:
AP averaged over IoU thresholds 0.50:0.05:0.95 (`ap`), at 0.50 (`ap50`) and 0.75 (`ap75`), over
all classes or over a subset (ViLD's novel classes: `class_ids`). Nothing of the metric is
re-implemented here.

The evaluator (`config.evals` type `detection`) runs the experiment's `fn(state, images) ->
detections [N, K, 6]` (x0, y0, x1, y1 in pixels, score, class index; rows of score <= 0 are
empty) over a split of a dataset with `image`, `boxes` and `labels` features (the offline scenes
set, padding labels -1) and reports `ap`, `ap50` and `ap75`; with `class_ids`, over those classes
only; with `subsets` ({name: class ids}), also `<name>_ap`, `<name>_ap50` and `<name>_ap75` over
each subset from the same detections (open-vocabulary detection: base and novel classes). Where
`fn` returns {'detections': [N, K, 6], 'masks': bool [N, K, H, W]} (Mask R-CNN), the mask AP
(iou_type 'segm', against the dataset's `instances`) comes too, as `mask_ap`, `mask_ap50` and
`mask_ap75`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Sequence

import jax
import numpy as np
from pycocotools import coco as coco_lib
from pycocotools import cocoeval
from pycocotools import mask as mask_lib

from jaxpapers.evaluators.base import Evaluator, load_split, map_batches


def _xywh(box: np.ndarray) -> list[float]:
  x0, y0, x1, y1 = (float(v) for v in box)
  return [x0, y0, x1 - x0, y1 - y0]


def _rle(mask: np.ndarray) -> dict:
  rle = mask_lib.encode(np.asfortranarray(mask.astype(np.uint8)))
  rle['counts'] = rle['counts'].decode('ascii')
  return rle


def coco_map(gt: Sequence[dict], detections: Sequence[dict], num_classes: int,
             iou_type: str = 'bbox', class_ids: Sequence[int] | None = None,
             image_size: tuple[int, int] | None = None) -> dict[str, float]:
  """COCO AP of `detections` against `gt`, one dict of arrays per image in both.

  gt[i]: 'boxes' [n, 4] (x0, y0, x1, y1), 'labels' [n] (class index), and for iou_type='segm'
  'masks' bool [n, H, W]. detections[i]: 'boxes' [m, 4], 'labels' [m], 'scores' [m] (and 'masks').
  Returns {'ap', 'ap50', 'ap75'}; -1 where COCO finds nothing to score (no ground truth).
  """
  images, annotations, results = [], [], []
  for image_id, (g, d) in enumerate(zip(gt, detections)):
    if image_size is not None:
      h, w = image_size
    elif 'masks' in g and len(g['masks']):
      h, w = g['masks'].shape[1:]
    else:
      h = w = 1
    images.append({'id': image_id, 'height': int(h), 'width': int(w)})
    for k, (box, label) in enumerate(zip(g['boxes'], g['labels'])):
      ann = {'id': len(annotations) + 1, 'image_id': image_id, 'category_id': int(label),
             'bbox': _xywh(box), 'area': float((box[2] - box[0]) * (box[3] - box[1])), 'iscrowd': 0}
      if iou_type == 'segm':
        ann['segmentation'] = _rle(g['masks'][k])
        ann['area'] = float(g['masks'][k].sum())
      annotations.append(ann)
    for k, (box, label, score) in enumerate(zip(d['boxes'], d['labels'], d['scores'])):
      res = {'image_id': image_id, 'category_id': int(label), 'bbox': _xywh(box),
             'score': float(score)}
      if iou_type == 'segm':
        res['segmentation'] = _rle(d['masks'][k])
      results.append(res)
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress.
    truth = coco_lib.COCO()
    truth.dataset = {'images': images, 'annotations': annotations,
                     'categories': [{'id': c} for c in range(num_classes)]}
    truth.createIndex()
    if not results:
      return {'ap': 0.0, 'ap50': 0.0, 'ap75': 0.0}
    predicted = truth.loadRes(results)
    evaluation = cocoeval.COCOeval(truth, predicted, iou_type)
    if class_ids is not None:
      evaluation.params.catIds = list(class_ids)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  stats = evaluation.stats
  return {'ap': float(stats[0]), 'ap50': float(stats[1]), 'ap75': float(stats[2])}


class Detection(Evaluator):
  defaults = {'dataset': 'scenes', 'data_dir': '', 'split': 'test', 'batch_size': 64,
              'num_classes': 5, 'class_ids': None, 'subsets': None}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    self.fn = jax.jit(self.fn)  # compiled once for every batch, rather than run op by op
    c = self.config
    data = load_split(c['dataset'], c['split'], c['data_dir'], ('image', 'boxes', 'labels'))
    self.images = data['image'].astype(np.float32) / 255.0
    self.gt = [{'boxes': boxes[labels >= 0], 'labels': labels[labels >= 0]}
               for boxes, labels in zip(data['boxes'], data['labels'])]
    self._gt_masks = None

  def gt_with_masks(self) -> list[dict]:
    """The ground truth with each object's mask (loaded on first use)."""
    if self._gt_masks is None:
      c = self.config
      instances = load_split(c['dataset'], c['split'], c['data_dir'], ('instances',))['instances']
      self._gt_masks = [{**g, 'masks': m[None] == np.arange(1, len(g['labels']) + 1)[:, None, None]}
                        for g, m in zip(self.gt, instances)]
    return self._gt_masks

  def __call__(self, state, step, writer):
    c = self.config
    found = map_batches(self.fn, state, self.images, c['batch_size'], self.mesh)
    masks = None
    if isinstance(found, dict):
      found, masks = found['detections'], found['masks']
    kept = [d[:, 4] > 0 for d in found]
    detections = [{'boxes': d[k, :4], 'scores': d[k, 4], 'labels': d[k, 5].astype(np.int64)}
                  for d, k in zip(found, kept)]
    class_ids = None if c['class_ids'] is None else list(c['class_ids'])
    size = self.images.shape[1:3]
    results = coco_map(self.gt, detections, c['num_classes'], class_ids=class_ids, image_size=size)
    for name, ids in (c['subsets'] or {}).items():
      subset = coco_map(self.gt, detections, c['num_classes'], class_ids=list(ids), image_size=size)
      results.update({f'{name}_{k}': v for k, v in subset.items()})
    if masks is not None:
      detections = [{**d, 'masks': m[k]} for d, m, k in zip(detections, masks, kept)]
      segm = coco_map(self.gt_with_masks(), detections, c['num_classes'], 'segm', class_ids, size)
      results.update({f'mask_{k}': v for k, v in segm.items()})
    return results
