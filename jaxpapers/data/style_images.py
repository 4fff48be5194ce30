"""Offline images for style transfer and super-resolution (issue 20).

* `photograph(name, height)`: the two photographs scikit-learn ships
  (`sklearn.datasets.load_sample_images`: 'china', a temple, and 'flower', a dahlia; 427x640),
  resized with PIL's bicubic filter to `height` rows (sides rounded to multiples of 4, as the
  transformation network's two stride-2 layers need), float32 in [0, 1].
* `procedural_style(height, width, seed)`: the style image, drawn by the project since no painting
  ships offline: curving bands of a warm / cool palette (a field of sines warped by low-frequency
  sines, "van Gogh-like" swirls in spirit only) with dark brush-stroke edges between bands and fine
  grain. Its statistics (colours, stroke widths, curvature) are what Gram matrices capture.
* `photo_crops(name, num, size, seed)`: random square crops (scales 0.4-1 of the short side,
  horizontal flips) of one photograph, uint8, as the content images Johnson et al.'s network
  trains on (the paper's 80,000 COCO images are out of reach: the offline experiment trains on
  crops of 'flower' and is tested on the unseen 'china').
* `bicubic_downsample(image, factor)` and `super_resolution_preprocess`: HR / LR pairs as SRGAN
  makes them (sec. 3.1: "downsampling HR images using bicubic kernel with downsampling factor r"),
  PIL's antialiased bicubic resize (the same kernel as MATLAB's imresize up to rounding). The
  preprocess (`config.data.preprocess='super_resolution_x4'`) gives `image`, the HR target in
  [-1, 1], and `low_res`, the x4 downsampled input in [0, 1] (SRGAN's ranges, sec. 3.2).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import Image

PHOTOGRAPHS = ('china', 'flower')
SR_FACTOR = 4


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def _sample_image(name: str) -> np.ndarray:
  from sklearn.datasets import load_sample_images
  if name not in PHOTOGRAPHS:
    raise ValueError(f'photograph {name!r}; valid: {", ".join(PHOTOGRAPHS)}')
  data = load_sample_images()
  return data.images[[f.rsplit('/', 1)[-1] for f in data.filenames].index(f'{name}.jpg')]


def photograph(name: str, height: int) -> np.ndarray:
  """One of scikit-learn's sample photographs, [height', width', 3] float32 in [0, 1]."""
  image = _sample_image(name)
  width = round(image.shape[1] * height / image.shape[0] / 4) * 4
  return _resize(image, height // 4 * 4, width).astype(np.float32) / 255.0


def procedural_style(height: int, width: int, seed: int = 0) -> np.ndarray:
  """The drawn style image, [height, width, 3] float32 in [0, 1]."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64) / max(height, width)
  warp = np.zeros_like(x)
  for _ in range(4):  # low-frequency warps bend the bands into swirls
    fx, fy, phase = rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)
    warp += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
  angle = rng.uniform(0, np.pi)
  field = 9.0 * (np.cos(angle) * x + np.sin(angle) * y + warp)
  palette = np.array([[0.08, 0.16, 0.45], [0.20, 0.45, 0.80], [0.95, 0.80, 0.25],
                      [0.90, 0.45, 0.12], [0.55, 0.75, 0.90]])
  band = np.floor(field).astype(int) % len(palette)
  image = palette[band]
  within = field - np.floor(field)  # 0..1 across each band: shade it, ink its edges
  image = image * (0.75 + 0.25 * np.sin(np.pi * within))[..., None]
  edge = np.minimum(within, 1.0 - within) < 0.07
  image[edge] = 0.06
  image += rng.normal(0.0, 0.03, image.shape)
  return np.clip(image, 0.0, 1.0).astype(np.float32)


def photo_crops(name: str, num: int, size: int, seed: int) -> dict[str, np.ndarray]:
  """{'image': uint8 [num, size, size, 3]}: random crops of photograph `name` (flipped half the time)."""
  image = _sample_image(name)
  rng = np.random.default_rng(seed)
  short = min(image.shape[:2])
  crops = np.zeros((num, size, size, 3), np.uint8)
  for i in range(num):
    side = int(rng.uniform(0.4, 1.0) * short)
    top = rng.integers(0, image.shape[0] - side + 1)
    left = rng.integers(0, image.shape[1] - side + 1)
    crop = _resize(image[top:top + side, left:left + side], size, size)
    crops[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
  return {'image': crops}


def bicubic_downsample(image: np.ndarray, factor: int) -> np.ndarray:
  """uint8 [H, W, C] -> uint8 [H / factor, W / factor, C], PIL's antialiased bicubic."""
  h, w = image.shape[:2]
  if h % factor or w % factor:
    raise ValueError(f'an image of {h}x{w} does not downsample by {factor}')
  return _resize(np.asarray(image, np.uint8), h // factor, w // factor)


def super_resolution_preprocess(ex: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """uint8 HR image -> {'image': HR in [-1, 1], 'low_res': x4 bicubic LR in [0, 1]}."""
  hr = np.asarray(ex['image'], np.uint8)
  return {'image': hr.astype(np.float32) / 127.5 - 1.0,
          'low_res': bicubic_downsample(hr, SR_FACTOR).astype(np.float32) / 255.0}
