"""Prototypical Networks: prototypes are mean embeddings (eq. 1), the classifier is a softmax over
negative squared Euclidean distances (eq. 2), and the Conv4 embedding has the paper's sizes."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.metric import protonet


def test_loss_is_the_softmax_over_negative_squared_distances_to_class_means():
  rng = np.random.default_rng(0)
  support = jnp.asarray(rng.normal(size=(4, 3, 5)), jnp.float32)
  query = jnp.asarray(rng.normal(size=(4, 2, 5)), jnp.float32)
  loss, accuracy = protonet.prototypical_loss(support, query)
  s, q = np.asarray(support, np.float64), np.asarray(query, np.float64)
  centres = s.mean(1)
  total, correct = 0.0, 0
  for k in range(4):
    for j in range(2):
      d = ((q[k, j] - centres) ** 2).sum(-1)
      log_p = -d - np.log(np.exp(-d).sum())
      total -= log_p[k]
      correct += int(np.argmax(log_p) == k)
  np.testing.assert_allclose(loss, total / 8, rtol=1e-5)
  np.testing.assert_allclose(accuracy, correct / 8)
  # Queries at their own prototypes, far apart: accuracy 1 and a small loss.
  centres = 10 * jnp.eye(4, 5)
  loss, accuracy = protonet.prototypical_loss(centres[:, None] + 0 * support[:, :1],
                                              jnp.repeat(centres[:, None], 2, 1))
  assert float(accuracy) == 1.0 and float(loss) < 1e-6


def test_conv4_maps_28x28_glyphs_to_64_features():
  model = zoo.build('protonet_conv4')
  x = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.key(0), x)
  assert model.apply(variables, x).shape == (2, 64)
  assert zoo.count_params('protonet_conv4') == protonet.conv4_params() == 111_936
