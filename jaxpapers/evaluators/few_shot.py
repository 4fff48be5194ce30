"""N-way K-shot classification episodes on held-out classes, the few-shot papers' benchmark.

The protocol of Vinyals et al. 2016 ("Matching Networks for One Shot Learning", arXiv:1606.04080,
section 4.1) that Snell et al. 2017 (Prototypical Networks, section 3.1) and Koch et al. 2015
(one-shot, section 4.3) report: an episode draws N classes of the evaluation split and K support
and Q query examples of each; every query is classified among the N classes from the supports
alone; the metric is the mean query accuracy over `episodes` episodes, with the 95% confidence
interval of the mean over episodes (Snell et al. report 1,000 episodes, Koch et al. 400 trials).

A query's class comes from the features `fn` (state, images) -> [M, D]:
  * `score_fn` empty: the nearest prototype, the class mean of the support features, by squared
    Euclidean distance (Prototypical Networks' classifier, eq. 1-2; any embedding can use it);
  * `score_fn` naming an experiment function (state, a [M, D], b [M, D]) -> [M] similarity of
    each row pair (the siamese network's L1 head): the class whose supports score highest on
    average (for K = 1, Koch et al.'s rule).

Config: `dataset`, `data_dir`, `split`, `ways` and `shots` (lists: every combination is run),
`queries`, `episodes`, `seed`, `batch_size`. Metrics `<N>way_<K>shot` and `<N>way_<K>shot_ci95`.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxpapers.data import episodes as episodes_lib
from jaxpapers.evaluators.base import Evaluator, load_split, map_batches


def prototype_predictions(support: np.ndarray, query: np.ndarray) -> np.ndarray:
  """support [E, N, K, D], query [E, N, Q, D] -> the predicted class of each query [E, N, Q]."""
  centres = support.mean(axis=2)  # [E, N, D]
  distances = ((query[:, :, :, None, :] - centres[:, None, None, :, :]) ** 2).sum(-1)
  return distances.argmin(-1)


def accuracy_and_interval(correct: np.ndarray) -> tuple[float, float]:
  """Mean accuracy over episodes (axis 0) and 1.96 standard errors of that mean."""
  per_episode = correct.reshape(len(correct), -1).mean(axis=1)
  return float(per_episode.mean()), float(1.96 * per_episode.std() / np.sqrt(len(per_episode)))


class FewShot(Evaluator):
  defaults = {'dataset': '', 'data_dir': '', 'split': 'test', 'ways': (5, 20), 'shots': (1, 5),
              'queries': 5, 'episodes': 600, 'seed': 0, 'batch_size': 256, 'score_fn': '',
              'pair_chunk': 16384}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    self.score_fn = self.experiment_fn(fns, 'score_fn') if c['score_fn'] else None
    self.data = load_split(c['dataset'], c['split'], c['data_dir'], ('image', 'label'))

  def __call__(self, state, step, writer):
    c = self.config
    features = map_batches(self.fn, state, self.data['image'], c['batch_size'], self.mesh)
    results = {}
    for ways in c['ways']:
      for shots in c['shots']:
        sampler = episodes_lib.ClassBatches(features, self.data['label'], ways,
                                            shots + c['queries'], c['seed'])
        rows = np.stack([sampler.indices(e) for e in range(c['episodes'])])  # [E, N, K + Q]
        support, query = features[rows[:, :, :shots]], features[rows[:, :, shots:]]
        if self.score_fn is None:
          predictions = prototype_predictions(support, query)
        else:
          predictions = self._pair_predictions(state, support, query)
        correct = predictions == np.arange(ways)[None, :, None]
        name = f'{ways}way_{shots}shot'
        results[name], results[f'{name}_ci95'] = accuracy_and_interval(correct)
    return results

  def _pair_predictions(self, state, support: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Every query against every support of its episode through `score_fn`, in padded chunks of
    row pairs (one shape: compiled once); a class's score is the mean over its K supports."""
    e, n, k, d = support.shape
    q = query.shape[2]
    a = np.broadcast_to(query.reshape(e, n * q, 1, d), (e, n * q, n * k, d)).reshape(-1, d)
    b = np.broadcast_to(support.reshape(e, 1, n * k, d), (e, n * q, n * k, d)).reshape(-1, d)
    chunk = -(-self.config['pair_chunk'] // self.mesh.size) * self.mesh.size
    scores = []
    for start in range(0, len(a), chunk):
      pa, pb = a[start:start + chunk], b[start:start + chunk]
      pad = chunk - len(pa)
      pa, pb = (np.concatenate([x, np.repeat(x[:1], pad, 0)]) for x in (pa, pb))
      scores.append(np.asarray(jax.device_get(self.score_fn(state, pa, pb)))[:chunk - pad])
    scores = np.concatenate(scores).reshape(e, n, q, n, k).mean(-1)
    return scores.argmax(-1)
