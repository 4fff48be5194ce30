"""Caption BLEU on the captioned shapes, through sacrebleu, with a nearest-neighbour baseline.

`fn(state, images float [B, 32, 32, 3] in [0, 1]) -> token ids [B, L]` (e.g. Show and Tell's beam
search). The first `num_images` images of `split` are captioned; each has as references every
caption template filled with its attributes (`shapes_captions.all_captions`: 7 references, as
COCO has about 5 per image). Returns corpus `bleu` (BLEU-4, sacrebleu's defaults: 13a
tokenisation, exponential brevity penalty), `exact` (the fraction of captions equal to one of their
references) and `nn_bleu`: the BLEU of the nearest-neighbour baseline, which captions each image with
the caption of the closest of the first `train_size` training images in pixel space (the
retrieval baseline of Show and Tell's section 4.3), computed once.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from jaxpapers.data import shapes_captions
from jaxpapers.evaluators.base import Evaluator, load_split, map_batches

ATTRIBUTES = ('shape', 'colour', 'size', 'position')


def corpus_bleu(hypotheses: list[str], references: list[list[str]]) -> float:
  """BLEU-4 of hypotheses against each one's list of references (all lists of equal length)."""
  import sacrebleu  # Here, so that importing the evaluators needs no metric package.
  streams = [list(r) for r in zip(*references)]
  return float(sacrebleu.corpus_bleu(hypotheses, streams).score)


class CaptionBLEU(Evaluator):
  defaults = {'dataset': 'shapes_captions', 'data_dir': '', 'split': 'validation',
              'num_images': 500, 'train_size': 5000, 'batch_size': 256}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    c = self.config
    data = load_split(c['dataset'], c['split'], c['data_dir'], ('image', *ATTRIBUTES),
                      c['num_images'])
    self.images = data['image'].astype(np.float32) / 255.0
    self.references = [shapes_captions.all_captions(*(int(data[a][i]) for a in ATTRIBUTES))
                       for i in range(len(self.images))]
    self.tokenizer = shapes_captions.tokenizer()
    self._nn_bleu = None

  def nearest_neighbour_bleu(self) -> float:
    if self._nn_bleu is None:
      c = self.config
      train = load_split(c['dataset'], 'train', c['data_dir'], ('image', 'caption'),
                         c['train_size'])
      index = NearestNeighbors(n_neighbors=1).fit(
          train['image'].reshape(len(train['image']), -1).astype(np.float32) / 255.0)
      _, nearest = index.kneighbors(self.images.reshape(len(self.images), -1))
      captions = [_text(train['caption'][i]) for i in nearest[:, 0]]
      self._nn_bleu = corpus_bleu(captions, self.references)
    return self._nn_bleu

  def __call__(self, state, step, writer):
    tokens = map_batches(self.fn, state, self.images, self.config['batch_size'], self.mesh)
    captions = [shapes_captions.decode(self.tokenizer, row) for row in tokens]
    exact = np.mean([h in refs for h, refs in zip(captions, self.references)])
    return {'bleu': corpus_bleu(captions, self.references), 'exact': float(exact),
            'nn_bleu': self.nearest_neighbour_bleu()}


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)
