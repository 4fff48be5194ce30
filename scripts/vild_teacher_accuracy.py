"""How well ViLD's CLIP teacher names the scenes' objects: zero-shot classification of the
ground-truth boxes of a scenes split, cropped as ViLD-image crops its proposals (32x32 RoIAlign of
the box scaled by `detect.CROP_SCALES`), against the class text embeddings the `vild` detector uses.
Per-class accuracy (chance 1/5): the ceiling of what ViLD-image can distill for each class.

    python scripts/vild_teacher_accuracy.py --clip_workdir=runs/clip_shapes_vit_1000
"""

import argparse

import jax.numpy as jnp
import numpy as np

from experiments import detect
from experiments.configs import detect as configs
from jaxpapers.data import scenes
from jaxpapers.detection import vild
from jaxpapers.evaluators.base import load_split


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--clip_workdir', required=True)
  parser.add_argument('--split', default='test')
  args = parser.parse_args()
  config = configs.get_config('vild_scenes')
  text_embeddings, encode_crops = detect.clip_teacher(config.vild.clip, args.clip_workdir)
  data = load_split('scenes', args.split, '', ('image', 'boxes', 'labels'))
  images = jnp.asarray(data['image'], jnp.float32) / 255.0
  correct, total = np.zeros(len(scenes.CLASSES)), np.zeros(len(scenes.CLASSES))
  for start in range(0, len(images), 100):
    boxes, labels = data['boxes'][start:start + 100], data['labels'][start:start + 100]
    embeddings = vild.teacher_embeddings(encode_crops, images[start:start + 100],
                                         jnp.asarray(boxes), detect.CROP_SIZE,
                                         detect.CROP_SCALES)
    predicted = np.asarray(jnp.argmax(embeddings @ text_embeddings.T, -1))
    for c in range(len(scenes.CLASSES)):
      correct[c] += np.sum((labels == c) & (predicted == c))
      total[c] += np.sum(labels == c)
  for c, name in enumerate(scenes.CLASSES):
    kind = 'novel' if name in scenes.NOVEL_CLASSES else 'base'
    print(f'{name:9s} ({kind}): {correct[c] / total[c]:.3f} of {int(total[c])}')
  print(f'all: {correct.sum() / total.sum():.3f} of {int(total.sum())}')


if __name__ == '__main__':
  main()
