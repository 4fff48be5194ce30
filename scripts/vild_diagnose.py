"""Where a trained ViLD run's region classifier sends each class: every ground-truth box of a scenes
split is classified by the run's heads, and the share of each true class given each label is
printed (rows: true class, columns: predicted label; the novel rows are the held-out classes).

* `text`: the ViLD-text head over the background and all five class embeddings (what ViLD's
  inference ranks, before box regression and NMS);
* `text, no background`: the same head over the classes alone;
* `image` (ViLD-ensemble runs): the head trained by ViLD-image alone, over the classes;
* `ensemble`: the combined probabilities the ensemble's detections are scored by.

Then, per class, what the detector finds at IoU >= 0.5: the share of the objects covered by the
run's own first stage (its top 8 and all of its inference proposals: the RPN was trained with the
novel objects as background), and by a final detection of the right class; and the detections of
each label with the share of them that lie on no object of that label (false positives).

    python scripts/vild_diagnose.py --workdir=runs/vild_scenes_ensemble \
        --clip_workdir=runs/clip_shapes_vit_2000 --ensemble
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments import detect
from experiments.configs import detect as configs
from jaxpapers import zoo
from jaxpapers.data import scenes
from jaxpapers.detection import boxes as box_lib
from jaxpapers.evaluators.base import load_split
from jaxpapers.train import checkpoint


def head_labels(model, variables, text_embeddings, class_valid, images, boxes):
  """Per head (module docstring), the label [B, G] each box [B, G, 4] gets: 0 background, 1 + c
  class c (heads without a background never answer 0). Jit it with `model` bound."""
  def run(m, images, boxes):
    features = m.features(images, False)
    regions, _ = m.region_outputs(features, boxes)
    out = {'text': m.classify(regions, text_embeddings),
           'text, no background': 1 + jnp.argmax(regions @ text_embeddings.T, -1)}
    out['text'] = jnp.argmax(out['text'], -1)
    if m.ensemble:
      image = m.image_regions(features, boxes) @ text_embeddings.T
      out['image'] = 1 + jnp.argmax(image, -1)
      probs, _ = m.class_probs(features, boxes, text_embeddings, class_valid)
      out['ensemble'] = jnp.argmax(probs, -1)
    return out
  return model.apply(variables, images, boxes, method=run)


def detection_recall(model, variables, text_embeddings, class_valid, images, gt_boxes):
  """Per ground-truth box [B, G]: its best IoU with the run's top 8 and all inference proposals;
  and the final detections {'boxes', 'scores', 'labels'} (labels 1 + class row). Jit it with
  `model` bound."""
  def run(m, images, gt_boxes):
    _, rois, valid = m.inference_rois(images, False)
    overlaps = jnp.where(valid[:, None], jax.vmap(box_lib.iou)(gt_boxes, rois), 0.0)  # [B, G, R]
    return overlaps[..., :8].max(-1), overlaps.max(-1), m(images, text_embeddings, class_valid)
  return model.apply(variables, images, gt_boxes, method=run)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--workdir', required=True, help='The ViLD run.')
  parser.add_argument('--clip_workdir', required=True, help="The run's CLIP teacher.")
  parser.add_argument('--ensemble', action='store_true', help='The run is a ViLD-ensemble.')
  parser.add_argument('--split', default='test')
  args = parser.parse_args()
  config = configs.get_config('vild_scenes')
  config.model.ensemble = args.ensemble
  text_embeddings, _ = detect.clip_teacher(config.vild.clip, args.clip_workdir)
  class_valid = scenes.base_class_mask()
  model = zoo.build_from_config(config.model, embed_dim=text_embeddings.shape[1])
  variables = jax.tree.map(jnp.asarray, checkpoint.load_variables(args.workdir))
  data = load_split('scenes', args.split, '', ('image', 'boxes', 'labels'))
  labels_fn = jax.jit(functools.partial(head_labels, model))  # compiled once for every batch
  recall_fn = jax.jit(functools.partial(detection_recall, model))
  counts = {}
  num = len(scenes.CLASSES)
  objects, top8, proposed, detected = (np.zeros(num) for _ in range(4))
  detections, false_positives = np.zeros(num), np.zeros(num)
  # Per label: its detections' mean score on an object of their class, near one (0.1 <= IoU < 0.5:
  # misplaced), on none, on each other class.
  where_score, where_count = np.zeros((num, 3 + num)), np.zeros((num, 3 + num))
  for start in range(0, len(data['image']), 100):
    images = jnp.asarray(data['image'][start:start + 100], jnp.float32) / 255.0
    labels = data['labels'][start:start + 100]
    gt_boxes = jnp.asarray(data['boxes'][start:start + 100], jnp.float32)
    found = labels_fn(variables, text_embeddings, class_valid, images, gt_boxes)
    for head, predicted in found.items():
      table = counts.setdefault(head, np.zeros((num, 1 + num)))
      np.add.at(table, (labels[labels >= 0], np.asarray(predicted)[labels >= 0]), 1)
    best8, best, out = jax.tree.map(np.asarray, recall_fn(
        variables, text_embeddings, class_valid, images, gt_boxes))
    overlaps = np.asarray(jax.vmap(box_lib.iou)(gt_boxes, jnp.asarray(out['boxes'])))  # [B, G, N]
    same = labels[:, :, None] == out['labels'][:, None, :] - 1
    hits = (overlaps >= 0.5) & same & (out['scores'][:, None, :] > 0)
    for c in range(num):
      mine = labels == c
      objects[c] += mine.sum()
      top8[c] += (best8[mine] >= 0.5).sum()
      proposed[c] += (best[mine] >= 0.5).sum()
      detected[c] += hits.any(-1)[mine].sum()
      kept = (out['scores'] > 0) & (out['labels'] == c + 1)
      detections[c] += kept.sum()
      false_positives[c] += (kept & ~hits.any(1)).sum()
      near = (np.where(same, overlaps, 0).max(1) >= 0.1)
      on = np.where(overlaps.max(1) >= 0.5, 3 + np.take_along_axis(
          labels, overlaps.argmax(1), 1), 2)  # [B, N]: 2 no object, 3 + class of the best object
      on = np.where(hits.any(1), 0, np.where(near & (on == 2), 1, on))[kept]
      np.add.at(where_score[c], on, out['scores'][kept])
      np.add.at(where_count[c], on, 1)
  columns = ('background', *scenes.CLASSES)
  for head, table in counts.items():
    print(f'\n{head}: share of each class (rows) given each label (columns), '
          f'{int(table.sum())} boxes')
    print(f'{"":18s}' + ''.join(f'{name:>11s}' for name in columns))
    for c, name in enumerate(scenes.CLASSES):
      kind = 'novel' if name in scenes.NOVEL_CLASSES else 'base'
      print(f'{name + " (" + kind + ")":18s}'
            + ''.join(f'{share:11.2f}' for share in table[c] / table[c].sum()))
  print('\nat IoU >= 0.5: objects covered by the top 8 / all inference proposals, by a detection '
        'of their class; detections of each label and the share on no object of it')
  for c, name in enumerate(scenes.CLASSES):
    print(f'{name:9s} {top8[c] / objects[c]:5.2f} {proposed[c] / objects[c]:5.2f} '
          f'{detected[c] / objects[c]:5.2f} | {int(detections[c]):6d} '
          f'{false_positives[c] / max(detections[c], 1):5.2f}')
  print('\ndetections of each label (rows) by what they lie on (columns): an object of their '
        'class (IoU >= 0.5), near one (0.1 <= IoU < 0.5, nothing else at 0.5), no object, an '
        'object of another class (IoU >= 0.5): count and mean score')
  print(f'{"":9s}' + ''.join(f'{name:>16s}'
                             for name in ('hit', 'near', 'nothing', *scenes.CLASSES)))
  for c, name in enumerate(scenes.CLASSES):
    print(f'{name:9s}' + ''.join(
        f'{int(n):8d} {score / max(n, 1):7.2f}' for n, score in zip(where_count[c], where_score[c])))


if __name__ == '__main__':
  main()
