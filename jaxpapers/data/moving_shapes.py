"""An offline video set for LRCN: one coloured shape moving across a dark frame; label = direction.

Built by the project for "Long-term Recurrent Convolutional Networks for Visual Recognition and
Description" (Donahue et al. 2014, arXiv:1411.4389), whose activity-recognition set (UCF-101) is
out of reach offline. What the experiment needs is kept: a class that no single frame shows, only
the sequence. Each clip is `NUM_FRAMES` = 8 RGB frames of 32x32 of one of the shapes of
`shapes_captions` (circle, square, triangle, diamond, cross) in one of its colours, radius 3 to
4.5 pixels, moving in a straight line at 1.2 to 2 pixels per frame in one of four directions
(`DIRECTIONS`, the label); the start is drawn uniformly among the positions that keep the shape
inside the frame for the whole clip, so where the shape is says little about where it goes.
The background is a random dark grey with pixel noise, redrawn every frame; rendering is 4x4
supersampled, as the captioned shapes.

Splits (`MovingShapes`, 'moving_shapes'): train 6,000, test 1,000; `MovingShapesTiny`
('moving_shapes_tiny'): 96 / 64, for tests. Every split is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxpapers.data import shapes_captions

DIRECTIONS = ('left', 'right', 'up', 'down')
_VELOCITY = {'left': (-1, 0), 'right': (1, 0), 'up': (0, -1), 'down': (0, 1)}  # (x, y), y down.
NUM_FRAMES, SIZE, _SUPERSAMPLE = 8, 32, 4


def render_clip(rng: np.random.Generator) -> tuple[np.ndarray, int]:
  """(uint8 [NUM_FRAMES, 32, 32, 3], direction index)."""
  shape = shapes_captions.SHAPES[rng.integers(len(shapes_captions.SHAPES))]
  colour = np.array(shapes_captions.COLOURS[shapes_captions.COLOUR_NAMES[rng.integers(6)]])
  direction = int(rng.integers(len(DIRECTIONS)))
  r, speed = rng.uniform(3.0, 4.5), rng.uniform(1.2, 2.0)
  vx, vy = np.array(_VELOCITY[DIRECTIONS[direction]]) * speed
  margin, steps = 1.35 * r + 0.5, NUM_FRAMES - 1  # Every rotated shape fits within 1.35 r.
  low_x, high_x = margin + max(0.0, -vx * steps), SIZE - margin - max(0.0, vx * steps)
  low_y, high_y = margin + max(0.0, -vy * steps), SIZE - margin - max(0.0, vy * steps)
  x0, y0 = rng.uniform(low_x, high_x), rng.uniform(low_y, high_y)
  rgb = np.clip(colour + rng.integers(-20, 21, 3), 0, 255)
  offsets = (np.arange(SIZE * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
  frames = []
  for t in range(NUM_FRAMES):
    dx, dy = offsets[None, :] - (x0 + vx * t), offsets[:, None] - (y0 + vy * t)
    coverage = shapes_captions._shape_mask(shape, dx, dy, r).reshape(
        SIZE, _SUPERSAMPLE, SIZE, _SUPERSAMPLE).mean(axis=(1, 3))[..., None]
    image = rng.uniform(0, 70) * (1 - coverage) + rgb * coverage
    image = image + rng.normal(0.0, 6.0, image.shape)
    frames.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
  return np.stack(frames), direction


class MovingShapes(tfds.core.GeneratorBasedBuilder):
  """Moving shapes (`moving_shapes`): 8-frame clips, labelled by the direction of motion."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SPLITS = {'train': (6_000, 0), 'test': (1_000, 1)}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='One shape moving left, right, up or down over 8 frames; label: direction.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=DIRECTIONS),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {name: self._generate_examples(*spec) for name, spec in self.SPLITS.items()}

  def _generate_examples(self, num_examples: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(num_examples):
      clip, label = render_clip(rng)
      yield i, {'image': clip, 'label': label}


class MovingShapesTiny(MovingShapes):
  """The same generator, a few clips (`moving_shapes_tiny`), for tests."""

  SPLITS = {'train': (96, 0), 'test': (64, 1)}


BUILDERS = {'moving_shapes': MovingShapes, 'moving_shapes_tiny': MovingShapesTiny}
