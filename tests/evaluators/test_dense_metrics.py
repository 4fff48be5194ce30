"""mIoU against scikit-learn's Jaccard score; COCO mAP through pycocotools on known cases."""

import numpy as np
from sklearn import metrics as sk_metrics

from jaxpapers.evaluators import detection, segmentation


def test_miou_is_the_mean_jaccard_of_present_classes():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, (3, 16, 16))
  predictions = np.where(rng.random(labels.shape) < 0.7, labels, rng.integers(0, 4, labels.shape))
  out = segmentation.segmentation_metrics(labels, predictions, 6)  # classes 4, 5 absent
  expected = sk_metrics.jaccard_score(labels.ravel(), predictions.ravel(), labels=range(4),
                                      average=None)
  np.testing.assert_allclose([out[f'iou_{i}'] for i in range(4)], expected)
  np.testing.assert_allclose(out['miou'], expected.mean())
  assert np.isnan(out['iou_5'])
  np.testing.assert_allclose(out['pixel_accuracy'], (labels == predictions).mean())
  assert segmentation.segmentation_metrics(labels, labels, 4)['miou'] == 1.0


def _gt():
  masks = np.zeros((2, 32, 32), bool)
  masks[0, 2:12, 3:13] = True
  masks[1, 16:30, 10:30] = True
  return {'boxes': np.array([[3, 2, 13, 12], [10, 16, 30, 30]], np.float32),
          'labels': np.array([0, 1]), 'masks': masks}


def test_coco_map_of_perfect_wrong_and_shifted_detections():
  gt = _gt()
  perfect = {**gt, 'scores': np.array([0.9, 0.8])}
  for iou_type in ('bbox', 'segm'):
    out = detection.coco_map([gt], [perfect], 2, iou_type)
    np.testing.assert_allclose([out['ap'], out['ap50']], 1.0)
  wrong_class = {**perfect, 'labels': np.array([1, 0])}
  assert detection.coco_map([gt], [wrong_class], 2)['ap'] == 0.0
  # Shifted by 2 pixels: IoU of the 10x10 box is 64/136 < 0.5, of the 20x14 box 216/344 > 0.5.
  shifted = {**perfect, 'boxes': gt['boxes'] + 2}
  out = detection.coco_map([gt], [shifted], 2)
  np.testing.assert_allclose(out['ap50'], 0.5, atol=1e-6)  # one class of two found at 0.5
  assert 0 < out['ap'] < out['ap50']
  # Restricted to class 1 (e.g. novel classes): only its detection counts.
  np.testing.assert_allclose(detection.coco_map([gt], [shifted], 2, class_ids=[1])['ap50'], 1.0)
