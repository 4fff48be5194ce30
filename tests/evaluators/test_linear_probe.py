"""Linear probes: the L-BFGS logistic regression against scikit-learn; C chosen on held rows."""

import chex
import numpy as np

from jaxpapers.evaluators import linear_probe


def test_logistic_regression_probe_matches_scikit_learn():
  from sklearn.linear_model import LogisticRegression
  rng = np.random.default_rng(0)
  x = rng.standard_normal((300, 6)).astype(np.float32)
  logits = x @ rng.standard_normal((6, 4)) + rng.gumbel(size=(300, 4))
  y = np.argmax(logits, axis=1).astype(np.int32)
  weights = (np.arange(300) % 3 != 0).astype(np.float32)  # A third of the rows left out.
  cs = np.array([0.05, 1.0], np.float32)
  kernels, biases = linear_probe.fit_logistic_regression(
      x, y, weights, 1.0 / (cs * weights.sum()), num_classes=4)
  for c, kernel, bias in zip(cs, kernels, biases):
    reference = LogisticRegression(C=float(c), max_iter=5000, tol=1e-8).fit(x[weights > 0],
                                                                             y[weights > 0])
    chex.assert_trees_all_close((kernel, bias), (reference.coef_.T, reference.intercept_),
                                atol=2e-3)


def test_probe_accuracies_separate_separable_classes_and_not_random_labels():
  rng = np.random.default_rng(1)
  centres = rng.standard_normal((3, 8)) * 4
  labels = rng.integers(0, 3, 400).astype(np.int32)
  x = (centres[labels] + rng.standard_normal((400, 8))).astype(np.float32)
  shuffled = rng.permutation(labels)
  accuracies = linear_probe.probe_accuracies(
      x[:300], labels[:300], {'held_out': (x[300:], labels[300:]),
                              'wrong_labels': (x[300:], shuffled[300:])}, num_classes=3)
  assert accuracies['held_out'] > 0.95 and accuracies['wrong_labels'] < 0.6
