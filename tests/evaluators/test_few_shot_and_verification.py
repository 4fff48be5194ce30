"""The few-shot and verification evaluators' decisions on features whose answers are known."""

import numpy as np

from jaxpapers.evaluators import few_shot, verification


def test_prototype_predictions_are_the_nearest_class_mean():
  rng = np.random.default_rng(0)
  support = rng.normal(size=(3, 4, 2, 5))
  query = rng.normal(size=(3, 4, 3, 5))
  predictions = few_shot.prototype_predictions(support, query)
  for e in range(3):
    centres = support[e].mean(1)
    for n in range(4):
      for q in range(3):
        assert predictions[e, n, q] == np.argmin(((query[e, n, q] - centres) ** 2).sum(-1))
  # Well separated classes: every query right.
  centres = 10 * np.eye(4, 5)
  support = centres[None, :, None] + 0.1 * rng.normal(size=(2, 4, 2, 5))
  query = centres[None, :, None] + 0.1 * rng.normal(size=(2, 4, 3, 5))
  correct = few_shot.prototype_predictions(support, query) == np.arange(4)[None, :, None]
  assert few_shot.accuracy_and_interval(correct) == (1.0, 0.0)
  mean, ci = few_shot.accuracy_and_interval(np.array([[1, 0], [1, 1], [0, 0], [1, 1]]))
  np.testing.assert_allclose([mean, ci], [0.625, 1.96 * np.std([0.5, 1, 0, 1]) / 2])


def test_verification_pairs_and_the_ten_fold_threshold():
  labels = np.repeat(np.arange(10), 4)
  first, second, same = verification.sample_pairs(labels, 50, seed=0)
  assert same.sum() == 50 and len(same) == 100
  np.testing.assert_array_equal(labels[first] == labels[second], same)
  assert np.all(first != second)
  # Scores that separate at 0 except for two flipped pairs: accuracy 98%.
  rng = np.random.default_rng(1)
  scores = np.where(same, 1.0, -1.0) + 0.1 * rng.normal(size=100)
  scores[:2] = -scores[:2]
  accuracy, _ = verification.ten_fold_accuracy(scores, same)
  np.testing.assert_allclose(accuracy, 0.98)
  t = verification.best_threshold(scores, same)
  assert -0.9 < t < 0.9
