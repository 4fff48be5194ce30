"""The siamese network: eq. (1)'s weighted L1 head, symmetric in its twins; the pair sampler; the
paper's network size."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.metric import siamese


def test_head_is_the_weighted_l1_distance_and_symmetric():
  model = zoo.build('siamese_glyphs')
  x1, x2 = jax.random.uniform(jax.random.key(0), (2, 3, 28, 28, 1))
  variables = model.init(jax.random.key(1), x1, x2)
  logits = model.apply(variables, x1, x2)
  np.testing.assert_allclose(logits, model.apply(variables, x2, x1), rtol=1e-5)
  h1 = model.apply(variables, x1, method='embed')
  h2 = model.apply(variables, x2, method='embed')
  assert h1.shape == (3, 1024) and float(h1.min()) >= 0 and float(h1.max()) <= 1  # sigmoid units
  alpha = variables['params']['alpha']
  expected = jnp.abs(h1 - h2) @ alpha['kernel'][:, 0] + alpha['bias'][0]
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
  loss = siamese.pair_loss(logits, jnp.array([1, 0, 1]))
  p = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(loss, -np.mean(np.log([p[0], 1 - p[1], p[2]])), rtol=1e-5)


def test_pairs_from_a_class_major_batch():
  labels = np.repeat(np.arange(5), 3)  # 5 classes x 3 examples
  for seed in range(4):
    first, second, same = siamese.pairs_from_batch(5, 3, jax.random.key(seed))
    assert first.shape == second.shape == same.shape == (10,)
    np.testing.assert_array_equal(labels[first] == labels[second], np.asarray(same) == 1)
    assert np.all(np.asarray(first) != np.asarray(second))
    assert float(same.mean()) == 0.5


def test_the_papers_network_has_its_parameter_count():
  assert zoo.count_params('siamese_koch') == 38_951_745  # figure 4's layers on 105x105 inputs
