"""The translation evaluators' colour measures: histogram intersection by its definition."""
import numpy as np

from jaxpapers.evaluators import translation


def test_colour_histogram_intersection_is_one_for_equal_and_zero_for_disjoint_colours():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(3, 8, 8, 3))
  mask = rng.uniform(size=(3, 8, 8)) > 0.5
  h = translation.colour_histogram(images, mask)
  np.testing.assert_allclose(h.sum(), 1.0)
  np.testing.assert_allclose(np.minimum(h, h).sum(), 1.0)
  dark, light = np.full((1, 4, 4, 3), 0.1), np.full((1, 4, 4, 3), 0.9)
  everywhere = np.ones((1, 4, 4), bool)
  assert np.minimum(translation.colour_histogram(dark, everywhere),
                    translation.colour_histogram(light, everywhere)).sum() == 0.0
  # Half the pixels moved to another bin: intersection 1/2.
  half = dark.copy()
  half[0, :2] = 0.9
  np.testing.assert_allclose(np.minimum(translation.colour_histogram(half, everywhere),
                                        translation.colour_histogram(dark, everywhere)).sum(), 0.5)
