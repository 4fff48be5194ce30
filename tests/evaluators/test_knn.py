"""Weighted k-NN (Wu et al. 2018, eq. 7-8): scikit-learn's k-NN with the same weights; the evaluator."""

import jax
import numpy as np

from jaxpapers import evaluators
from jaxpapers.evaluators import knn
from jaxpapers.train import devices


def test_weighted_knn_matches_scikit_learn_with_exponential_cosine_weights():
  from sklearn.neighbors import KNeighborsClassifier
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((4, 6))
  bank_labels = rng.integers(0, 4, 300).astype(np.int32)
  bank = (centres[bank_labels] + 1.5 * rng.standard_normal((300, 6))).astype(np.float32)
  queries = rng.standard_normal((100, 6)).astype(np.float32) + centres[rng.integers(0, 4, 100)]
  for k, tau in ((20, 0.07), (50, 0.5)):
    # sklearn's cosine distance is 1 - s, so the weight exp(s / tau) is exp((1 - d) / tau).
    reference = KNeighborsClassifier(n_neighbors=k, metric='cosine', algorithm='brute',
                                     weights=lambda d, tau=tau: np.exp((1 - d) / tau))
    expected = reference.fit(bank, bank_labels).predict(queries)
    got = np.asarray(knn.knn_predict(bank, bank_labels, queries, num_classes=4, k=k,
                                     temperature=tau))
    assert np.mean(got == expected) >= 0.99  # ties in float may break differently
  # One neighbour is nearest-neighbour classification; the bank classifies itself perfectly.
  assert knn.knn_accuracy(bank, bank_labels, bank, bank_labels, 4, k=1, chunk=64) == 1.0


def test_knn_evaluator_on_raw_digit_pixels(digits_dir):
  config = {'type': 'knn', 'fn': 'pixels', 'dataset': 'sklearn_digits', 'data_dir': digits_dir,
            'eval_splits': {'test': 'test'}, 'k': 20}
  fns = {'pixels': lambda state, images: images.reshape(images.shape[0], -1).astype(np.float32)}
  evaluator = evaluators.build({'knn': config}, fns, devices.make_mesh())['knn']
  assert isinstance(evaluator, knn.KNN) and jax.device_count() == 8
  metrics = evaluator(None, 0, None)
  assert set(metrics) == {'test_label'} and metrics['test_label'] > 0.9  # pixels suffice on digits
