"""The SimCLR view recipe: jit-able, in range, sized, per-view options, unknown options refused."""

import jax
import numpy as np
import pytest

from jaxpapers.errors import ConfigError
from jaxpapers.selfsup import views


def test_views_are_random_in_range_and_sized():
  images = jax.random.uniform(jax.random.key(0), (16, 32, 32, 3))
  view = jax.jit(views.view_fn({'crop_scale': (0.2, 1.0)}))
  a, b = view(images, jax.random.key(1)), view(images, jax.random.key(2))
  assert a.shape == images.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert float(np.abs(a - b).mean()) > 0.01
  np.testing.assert_array_equal(a, view(images, jax.random.key(1)))  # a pure function of the key
  small = views.view_fn({'crop_size': 16, 'crop_scale': (0.05, 0.14), 'jitter_strength': 0.0})(
      images, jax.random.key(3))
  assert small.shape == (16, 16, 16, 3)


def test_per_view_options_and_errors():
  images = jax.random.uniform(jax.random.key(0), (8, 8, 8, 3))
  config = {'crop_scale': (1.0, 1.0), 'crop_ratio': (1.0, 1.0), 'flip': False,
            'jitter_strength': 0.0, 'grayscale_prob': (0.0, 1.0), 'blur_prob': 0.0}
  first = views.view_fn(config, 0)(images, jax.random.key(1))
  second = views.view_fn(config, 1)(images, jax.random.key(1))
  np.testing.assert_allclose(first, images, atol=1e-6)
  np.testing.assert_allclose(second[..., 0], second[..., 2])
  with pytest.raises(ConfigError, match='unknown view option solarize'):
    views.view_fn({'solarize': 0.2})
