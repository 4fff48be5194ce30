"""Frechet distance against closed forms for Gaussians; the IS analogue on constructed inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from jaxpapers.convnets import lenet
from jaxpapers.evaluators import sample_quality as sq


def _random_spd(rng, dim):
  a = rng.standard_normal((dim, dim))
  return a @ a.T + 0.1 * np.eye(dim)


def test_frechet_distance_of_commuting_gaussians():
  # Diagonal covariances commute: d^2 = |dm|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 2.0])
  expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = sq.frechet_distance(sq.Statistics(mean_a, np.diag(a)), sq.Statistics(mean_b, np.diag(b)))
  assert got == pytest.approx(expected, rel=1e-12)
  assert expected == pytest.approx(9 + 16 + 4 + 1)


def test_frechet_distance_of_two_dimensional_gaussians_in_closed_form():
  # For 2x2 matrices Tr (C1 C2)^(1/2) = sqrt(Tr(C1 C2) + 2 sqrt(det C1 det C2)): the two eigenvalues
  # of C1 C2 are positive, and (sqrt(l1) + sqrt(l2))^2 = l1 + l2 + 2 sqrt(l1 l2).
  rng = np.random.default_rng(0)
  for _ in range(5):
    c1, c2 = _random_spd(rng, 2), _random_spd(rng, 2)
    m1, m2 = rng.standard_normal(2), rng.standard_normal(2)
    trace_sqrt = np.sqrt(np.trace(c1 @ c2) + 2 * np.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
    expected = np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * trace_sqrt
    got = sq.frechet_distance(sq.Statistics(m1, c1), sq.Statistics(m2, c2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_agrees_with_sqrtm_and_is_a_squared_metric():
  rng = np.random.default_rng(1)
  c1, c2 = _random_spd(rng, 16), _random_spd(rng, 16)
  m1, m2 = rng.standard_normal(16), rng.standard_normal(16)
  a, b = sq.Statistics(m1, c1), sq.Statistics(m2, c2)
  expected = (np.sum((m1 - m2) ** 2) + np.trace(c1 + c2)
              - 2 * np.trace(linalg.sqrtm(c1 @ c2)).real)
  assert sq.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
  assert sq.frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
  assert abs(sq.frechet_distance(a, a)) < 1e-9
  # Fewer samples than dimensions give a singular covariance; the distance stays finite, >= 0.
  few = sq.feature_statistics(rng.standard_normal((5, 16)))
  assert np.linalg.matrix_rank(few.cov) == 4
  assert 0 < sq.frechet_distance(few, b) < np.inf


def test_sample_statistics_converge_to_the_gaussian_distance():
  rng = np.random.default_rng(2)
  c1, c2 = np.diag([1.0, 2.0, 0.5]), _random_spd(rng, 3)
  m1, m2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
  exact = sq.frechet_distance(sq.Statistics(m1, c1), sq.Statistics(m2, c2))
  x1 = rng.multivariate_normal(m1, c1, size=200_000)
  x2 = rng.multivariate_normal(m2, c2, size=200_000)
  stats1 = sq.feature_statistics(x1)
  np.testing.assert_allclose(stats1.cov, np.cov(x1.T), rtol=1e-12)  # unbiased, as in FID code
  estimate = sq.frechet_distance(stats1, sq.feature_statistics(x2))
  assert estimate == pytest.approx(exact, rel=0.02)
  with pytest.raises(ValueError):
    sq.feature_statistics(np.zeros((1, 3)))


def test_classifier_score_on_constructed_predictions():
  eye = np.eye(10)
  # Certain and uniformly spread over K classes: K. Certain but all one class: 1.
  assert sq.classifier_score(np.tile(eye, (3, 1))) == pytest.approx(10.0)
  assert sq.classifier_score(np.tile(eye[:1], (30, 1))) == pytest.approx(1.0)
  # Certain over 4 equally frequent classes: 4, whatever K.
  assert sq.classifier_score(np.tile(eye[:4], (5, 1))) == pytest.approx(4.0)
  # Uninformative predictions: 1.
  assert sq.classifier_score(np.full((7, 10), 0.1)) == pytest.approx(1.0)
  # Two classes, half the images p = (a, 1 - a), half mirrored: the marginal is uniform and
  # KL = log 2 - H(a), so the score is 2 exp(-H(a)).
  a = 0.8
  probs = np.array([[a, 1 - a], [1 - a, a]] * 50)
  entropy = -(a * np.log(a) + (1 - a) * np.log(1 - a))
  assert sq.classifier_score(probs) == pytest.approx(2 * np.exp(-entropy), rel=1e-12)
  # Imbalanced certain classes: exp(H(class frequencies)).
  probs = np.concatenate([np.tile(eye[0], (3, 1)), np.tile(eye[1], (1, 1))])
  freq = np.array([0.75, 0.25])
  assert sq.classifier_score(probs) == pytest.approx(np.exp(-np.sum(freq * np.log(freq))))


def test_classifier_features_are_the_penultimate_activations():
  model = lenet.LeNet(conv_features=(4, 8), kernel_size=3, padding='SAME', hidden_features=(16,))
  images = np.random.default_rng(3).uniform(size=(7, 8, 8, 1)).astype(np.float32)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  classifier = sq.Classifier(model, variables, batch_size=4)  # 7 images: two padded batches
  features, probs = classifier(images)
  assert features.shape == (7, 16) and probs.shape == (7, 10)
  _, captured = model.apply(variables, images, capture_intermediates=True)
  hidden = np.maximum(captured['intermediates']['Dense_0']['__call__'][0], 0.0)
  np.testing.assert_allclose(features, hidden, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs, jax.nn.softmax(model.apply(variables, images)), rtol=1e-5,
                             atol=1e-7)
  # Real images against their own statistics: distance 0.
  quality = classifier.quality(images, sq.feature_statistics(features))
  assert abs(quality['frechet_distance']) < 1e-6
  assert 1.0 <= quality['classifier_score'] <= 10.0


def test_class_accuracy_of_samples_drawn_for_known_classes():
  eye = np.eye(3)
  probs = eye[[0, 0, 1, 2, 2, 1]]
  labels = np.array([0, 1, 1, 2, 2, 2])
  metrics = sq.class_accuracy(probs, labels)
  assert metrics['class_accuracy'] == pytest.approx(4 / 6)
  assert metrics['class_accuracy_0'] == 1.0 and metrics['class_accuracy_1'] == 0.5
  assert metrics['class_accuracy_2'] == pytest.approx(2 / 3)
  assert np.isnan(sq.class_accuracy(eye[[0, 1]], np.array([0, 1]))['class_accuracy_2'])


def test_sample_metrics_score_labels_against_the_classifier():
  model = lenet.LeNet(conv_features=(4, 8), kernel_size=3, padding='SAME', hidden_features=(16,))
  images = np.random.default_rng(4).uniform(size=(30, 8, 8, 1)).astype(np.float32)
  classifier = sq.Classifier(model, model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))),
                             batch_size=16)
  features, probs = classifier(images)
  predicted = probs.argmax(axis=1)
  reference = sq.feature_statistics(features)
  right = sq.sample_metrics(classifier, images, reference, labels=predicted)
  wrong = sq.sample_metrics(classifier, images, reference, labels=(predicted + 1) % 10)
  assert right['class_accuracy'] == 1.0 and wrong['class_accuracy'] == 0.0
  assert abs(right['frechet_distance']) < 1e-6
  assert set(sq.sample_metrics(classifier, images, reference)) == {
      'frechet_distance', 'classifier_score', 'classes_found'}
