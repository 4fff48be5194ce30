"""The views the self-supervised papers train on: random augmentations of each image, on the device.

SimCLR (arXiv:2002.05709, appendix A, and its section 3 study of compositions) fixed the recipe
the later papers reuse with small changes, applied independently to make each view:
random resized crop (scale 0.08-1, ratio 3/4-4/3) -> horizontal flip (p 0.5) -> colour jitter of
strength s (brightness, contrast, saturation 0.8 s, hue 0.2 s; p 0.8) -> grey-scale (p 0.2) ->
Gaussian blur (kernel 10% of the side, sigma 0.1-2.0, p 0.5; SimCLR leaves it out on CIFAR).
MoCo v1 has no blur; BYOL (table 6) makes the two views asymmetric: blur p 1.0 and 0.1, solarise p 0
and 0.2 (solarisation is not implemented here); SwAV adds multi-crop (2 large crops, scale 0.14-1,
and V small ones, scale 0.05-0.14, at a lower resolution: 224 and 96 pixels in the paper).

`view_fn(config, index)` builds view `index`'s augmentation, `(images, key) -> images`, from a
config of the keys below; a tuple value gives one entry per view (BYOL's blur probabilities).
The primitives are `jaxpapers.data.augment`'s; images are NHWC floats in [0, 1].
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax

from jaxpapers.data import augment
from jaxpapers.errors import ConfigError

DEFAULTS = {
    'crop_scale': (0.08, 1.0), 'crop_ratio': (3 / 4, 4 / 3), 'crop_size': 0,  # 0: the input's
    'flip': True,
    'jitter_strength': 1.0, 'jitter_prob': 0.8,
    'grayscale_prob': 0.2,
    'blur_prob': 0.5, 'blur_sigma': (0.1, 2.0), 'blur_kernel': 0,  # 0: 10% of the side, odd
}


# Options that may be given per view, as a tuple with one entry per view (BYOL: blur_prob=(1.0, 0.1)).
PER_VIEW = ('jitter_strength', 'jitter_prob', 'grayscale_prob', 'blur_prob')


def view_fn(config: Mapping[str, Any], index: int = 0) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """View `index`'s augmentation (see the module docstring)."""
  unknown = sorted(set(config) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f'unknown view option {", ".join(unknown)}; valid: {", ".join(DEFAULTS)}')
  c = {**DEFAULTS, **dict(config)}
  for k in PER_VIEW:
    if isinstance(c[k], (tuple, list)):
      c[k] = c[k][index % len(c[k])]
  s = c['jitter_strength']

  def apply(images: jax.Array, key: jax.Array) -> jax.Array:
    crop_key, flip_key, jitter_key, grey_key, blur_key = jax.random.split(key, 5)
    size = (c['crop_size'],) * 2 if c['crop_size'] else None
    images = augment.random_resized_crop(images, crop_key, size, c['crop_scale'], c['crop_ratio'])
    if c['flip']:
      images = augment.random_flip_left_right(images, flip_key)
    if s and c['jitter_prob']:
      images = augment.color_jitter(images, jitter_key, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s,
                                    prob=c['jitter_prob'])
    if c['grayscale_prob']:
      images = augment.random_grayscale(images, grey_key, c['grayscale_prob'])
    if c['blur_prob']:
      kernel = c['blur_kernel'] or max(3, int(0.1 * images.shape[1]) // 2 * 2 + 1)
      images = augment.gaussian_blur(images, blur_key, kernel, c['blur_sigma'], c['blur_prob'])
    return images

  return apply
