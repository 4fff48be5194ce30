"""The offline images of the style and super-resolution experiments."""

import numpy as np
import pytest

from jaxpapers.data import pipeline, style_images


def test_photographs_and_style_image():
  china = style_images.photograph('china', 64)
  assert china.shape == (64, 96, 3) and china.dtype == np.float32
  assert 0.0 <= china.min() and china.max() <= 1.0 and china.std() > 0.1
  style = style_images.procedural_style(32, 48, seed=1)
  assert style.shape == (32, 48, 3) and 0.0 <= style.min() and style.max() <= 1.0
  np.testing.assert_array_equal(style, style_images.procedural_style(32, 48, seed=1))
  assert not np.array_equal(style, style_images.procedural_style(32, 48, seed=2))
  with pytest.raises(ValueError, match='photograph'):
    style_images.photograph('lena', 64)


def test_photo_crops():
  crops = style_images.photo_crops('flower', 3, 16, seed=0)['image']
  assert crops.shape == (3, 16, 16, 3) and crops.dtype == np.uint8
  np.testing.assert_array_equal(crops, style_images.photo_crops('flower', 3, 16, seed=0)['image'])


def test_super_resolution_pairs():
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
  ex = pipeline.PREPROCESSORS['super_resolution_x4']({'image': hr, 'label': 3})
  assert set(ex) == {'image', 'low_res'}
  assert ex['low_res'].shape == (8, 8, 3) and ex['image'].shape == (32, 32, 3)
  assert -1.0 <= ex['image'].min() and ex['image'].max() <= 1.0
  assert 0.0 <= ex['low_res'].min() and ex['low_res'].max() <= 1.0
  # The bicubic kernel averages (it is antialiased): a flat image stays flat, noise is smoothed.
  flat = np.full((32, 32, 3), 77, np.uint8)
  np.testing.assert_array_equal(style_images.bicubic_downsample(flat, 4), np.full((8, 8, 3), 77))
  assert style_images.bicubic_downsample(hr, 4).std() < 0.5 * hr.std()
  with pytest.raises(ValueError, match='downsample'):
    style_images.bicubic_downsample(hr[:30], 4)
