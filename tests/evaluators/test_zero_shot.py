"""Zero-shot classification: the prompt ensemble and cosine logits (CLIP section 3.1)."""

import chex
import numpy as np

from jaxpapers.evaluators import zero_shot

RNG = np.random.default_rng(0)
IMAGE_FEATURES = RNG.standard_normal((32, 8)).astype(np.float32)


def test_zero_shot_ensemble_averages_normalised_embeddings():
  features = RNG.standard_normal((3, 4, 5)).astype(np.float32)  # templates, classes, width
  scaled = features * np.array([1.0, 10.0, 100.0], np.float32)[:, None, None]
  expected = (features / np.linalg.norm(features, axis=-1, keepdims=True)).mean(0)
  expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
  chex.assert_trees_all_close(zero_shot.zero_shot_classifier(scaled), expected, rtol=1e-5, atol=1e-6)
  logits = zero_shot.zero_shot_logits(IMAGE_FEATURES[:, :5] * 3.0, expected)
  chex.assert_shape(logits, (32, 4))
  assert np.all(np.abs(logits) <= 1.0 + 1e-6)  # Cosine similarities.
