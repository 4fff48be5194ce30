"""Hinton et al.'s soft-target loss: its closed form, eq. (2)'s gradient, and the T^2 scaling that
keeps the soft-target gradient's magnitude as the temperature changes (section 2.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.distill import hinton


def _logits(seed, shape=(16, 10), scale=3.0):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=shape) * scale
  return jnp.asarray(z - z.mean(-1, keepdims=True), jnp.float32)  # zero-mean, as eq. (4) assumes


def test_loss_equals_its_closed_form():
  student, teacher = _logits(0), _logits(1)
  labels = jnp.arange(16) % 10
  t, alpha = 4.0, 0.9
  s, v = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
  p = np.exp(v / t) / np.exp(v / t).sum(-1, keepdims=True)
  log_q = s / t - np.log(np.exp(s / t).sum(-1, keepdims=True))
  soft = t ** 2 * np.mean(-(p * log_q).sum(-1))
  log_q1 = s - np.log(np.exp(s).sum(-1, keepdims=True))
  hard = np.mean(-log_q1[np.arange(16), np.asarray(labels)])
  loss, parts = hinton.distillation_loss(student, teacher, labels, t, alpha)
  np.testing.assert_allclose(parts['soft_loss'], soft, rtol=1e-5)
  np.testing.assert_allclose(parts['hard_loss'], hard, rtol=1e-5)
  np.testing.assert_allclose(loss, alpha * soft + (1 - alpha) * hard, rtol=1e-5)
  # Matching the teacher minimises the soft term: there it is T^2 times the teacher's entropy.
  entropy = t ** 2 * np.mean(-(p * np.log(p)).sum(-1))
  np.testing.assert_allclose(hinton.soft_target_loss(teacher, teacher, t), entropy, rtol=1e-5)
  assert float(hinton.soft_target_loss(student, teacher, t)) > entropy


def test_gradient_is_eq_2():
  student, teacher = _logits(2), _logits(3)
  t, n = 3.0, student.shape[0]
  grad = jax.grad(hinton.soft_target_loss)(student, teacher, t, scale_by_t2=False)
  q, p = hinton.soft_targets(student, t), hinton.soft_targets(teacher, t)
  np.testing.assert_allclose(grad, (q - p) / t / n, rtol=1e-4, atol=1e-7)  # per example, / batch


@pytest.mark.parametrize('scale', [1.0, 3.0])
def test_t2_scaling_keeps_the_soft_target_gradient_magnitude(scale):
  student, teacher = _logits(4, scale=scale), _logits(5, scale=scale)
  temperatures = [5.0, 10.0, 20.0, 50.0, 100.0]
  norm = lambda g: float(jnp.linalg.norm(g))
  scaled = [norm(jax.grad(hinton.soft_target_loss)(student, teacher, t)) for t in temperatures]
  plain = [norm(jax.grad(hinton.soft_target_loss)(student, teacher, t, scale_by_t2=False))
           for t in temperatures]
  # Eq. (4): T^2 dC/dz -> (z - v) / (N_classes * batch) at high T, whatever T.
  limit = norm((student - teacher) / (10 * student.shape[0]))
  np.testing.assert_allclose(scaled, limit, rtol=0.1 if scale == 1.0 else 0.3)
  assert max(scaled) / min(scaled) < 1.35
  # Unscaled, the gradient shrinks as 1/T^2: 400 times from T = 5 to T = 100.
  np.testing.assert_allclose(plain[0] / plain[-1], 400, rtol=0.35)
  # At the highest temperatures the scaled gradient has converged to the limit.
  np.testing.assert_allclose(scaled[-1], limit, rtol=0.01)


def test_presets_have_the_papers_layer_sizes():
  assert zoo.count_params('hinton_mnist_teacher') == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 12010
  assert zoo.count_params('hinton_mnist_student') == 784 * 800 + 800 + 800 * 800 + 800 + 8010
  model = zoo.build('digits_teacher')
  x = jnp.ones((4, 8, 8, 1))
  variables = model.init(jax.random.key(0), x)
  a = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(1)})
  b = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(a, b)  # dropout in training
  np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))
