"""Face-verification accuracy: are two images of the same class? A threshold on a pair's distance.

FaceNet (Schroff et al. 2015, arXiv:1503.03832), section 5.1 / 5.7: verification on pairs is
decided by a threshold on the squared L2 distance of the embeddings; on LFW the protocol is
"unrestricted, labelled outside data" with ten folds: the threshold is chosen on nine folds (the
one of highest accuracy there) and the accuracy measured on the tenth, mean and standard deviation
over the ten (LFW's standard; FaceNet reports 99.63% +- 0.09).

Here the pairs are drawn from the evaluation split (classes never seen in training): `pairs` same
pairs (two different examples of one class) and `pairs` different pairs (examples of two classes),
seeded. The score of a pair is minus the squared Euclidean distance of the features `fn`, or
`score_fn` (state, a [M, D], b [M, D]) -> [M] when given (the siamese network's head). Metrics:
`accuracy` and `accuracy_std` (ten folds), `auc` (area under the ROC curve, scikit-learn).
"""

from __future__ import annotations

import jax
import numpy as np
from sklearn.metrics import roc_auc_score

from jaxpapers.evaluators.base import Evaluator, load_split, map_batches


def sample_pairs(labels: np.ndarray, num: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
  """`num` same and `num` different index pairs (first, second, same), shuffled."""
  rng = np.random.default_rng(seed)
  by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
  classes = np.array([c for c, members in by_class.items() if len(members) >= 2])
  first, second = [], []
  for c in rng.choice(classes, num):
    i, j = rng.choice(by_class[c], 2, replace=False)
    first.append(i), second.append(j)
  for _ in range(num):
    c1, c2 = rng.choice(classes, 2, replace=False)
    first.append(rng.choice(by_class[c1])), second.append(rng.choice(by_class[c2]))
  same = np.concatenate([np.ones(num, bool), np.zeros(num, bool)])
  order = rng.permutation(2 * num)
  return np.array(first)[order], np.array(second)[order], same[order]


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
  """The threshold t of highest accuracy for "same iff score >= t", among the midpoints."""
  values = np.sort(np.unique(scores))
  candidates = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2, [values[-1] + 1.0]])
  accuracy = [np.mean((scores >= t) == same) for t in candidates]
  return float(candidates[int(np.argmax(accuracy))])


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> tuple[float, float]:
  """LFW's protocol: each fold's accuracy at the threshold chosen on the other folds."""
  parts = np.array_split(np.arange(len(scores)), folds)
  accuracies = []
  for fold in parts:
    rest = np.setdiff1d(np.arange(len(scores)), fold)
    t = best_threshold(scores[rest], same[rest])
    accuracies.append(np.mean((scores[fold] >= t) == same[fold]))
  return float(np.mean(accuracies)), float(np.std(accuracies))


class Verification(Evaluator):
  defaults = {'dataset': '', 'data_dir': '', 'split': 'test', 'pairs': 3000, 'seed': 0,
              'batch_size': 256, 'score_fn': ''}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    self.score_fn = self.experiment_fn(fns, 'score_fn') if c['score_fn'] else None
    self.data = load_split(c['dataset'], c['split'], c['data_dir'], ('image', 'label'))
    self.first, self.second, self.same = sample_pairs(self.data['label'], c['pairs'], c['seed'])

  def __call__(self, state, step, writer):
    c = self.config
    features = map_batches(self.fn, state, self.data['image'], c['batch_size'], self.mesh)
    a, b = features[self.first], features[self.second]
    if self.score_fn is None:
      scores = -np.sum((a - b) ** 2, axis=-1)
    else:
      size = -(-len(a) // self.mesh.size) * self.mesh.size
      pad = lambda x: np.concatenate([x, np.repeat(x[:1], size - len(x), 0)])
      scores = np.asarray(jax.device_get(self.score_fn(state, pad(a), pad(b))))[:len(a)]
    accuracy, std = ten_fold_accuracy(scores, self.same)
    return {'accuracy': accuracy, 'accuracy_std': std, 'auc': float(roc_auc_score(self.same, scores))}
