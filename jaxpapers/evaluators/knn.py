"""Weighted k-nearest-neighbour classification on frozen features, the self-supervised papers' monitor.

"Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (Wu, Xiong, Yu, Lin
2018, arXiv:1805.01978), section 3.4, eq. (7)-(8): features are L2-normalised; a query's k nearest
training features by cosine similarity s_i vote for their classes with weights exp(s_i / tau);
the class of largest total weight is the prediction. k = 200 and tau = 0.07 there; InstDisc, MoCo
(its k-NN monitor), SwAV, DINO and others report this classifier beside the linear probe. It needs
no training, so it is cheap to run at every evaluation.

Config: `fn` (state, images) -> features [N, D]; `dataset`, `data_dir`; `train_split` and its first
`train_size` examples (0: all), the memory bank; `eval_splits`, {name: split}; `targets`, the label
features; `k`, `temperature`; `cache_features` as the linear probe's. Metrics
`<eval name>_<target>`: accuracy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.evaluators.base import FrozenFeatures


@functools.partial(jax.jit, static_argnames=('num_classes', 'k'))
def knn_predict(bank: jax.Array, bank_labels: jax.Array, queries: jax.Array, *, num_classes: int,
                k: int = 200, temperature: float = 0.07) -> jax.Array:
  """Eq. (7)-(8): the weighted vote of each query's k most cosine-similar bank rows -> labels [Q]."""
  normalize = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  similarity = normalize(queries.astype(jnp.float32)) @ normalize(bank.astype(jnp.float32)).T
  top, index = jax.lax.top_k(similarity, min(k, bank.shape[0]))
  votes = jax.nn.one_hot(bank_labels[index], num_classes) * jnp.exp(top / temperature)[..., None]
  return jnp.argmax(votes.sum(axis=1), axis=-1)


def knn_accuracy(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray,
                 labels: np.ndarray, num_classes: int, k: int = 200, temperature: float = 0.07,
                 chunk: int = 1024) -> float:
  """Accuracy of `knn_predict` on (queries, labels), in chunks of queries to bound memory."""
  predictions = [np.asarray(knn_predict(bank, bank_labels, queries[i:i + chunk],
                                        num_classes=num_classes, k=k, temperature=temperature))
                 for i in range(0, len(queries), chunk)]
  return float(np.mean(np.concatenate(predictions) == labels))


class KNN(FrozenFeatures):
  defaults = {**FrozenFeatures.defaults, 'k': 200, 'temperature': 0.07}

  def __call__(self, state, step, writer):
    c, features = self.config, self.features(state)
    results = {}
    for target in c['targets']:
      bank_labels = self.sets['train'][target].astype(np.int32)
      for name in self.sets:
        if name != 'train':
          results[f'{name}_{target}'] = knn_accuracy(
              features['train'], bank_labels, features[name],
              self.sets[name][target].astype(np.int32), self.num_classes[target], c['k'],
              c['temperature'])
    return results
