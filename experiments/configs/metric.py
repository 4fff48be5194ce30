"""Metric learning on the offline glyphs (`font_glyphs`, 28x28, 899 background / 727 evaluation
characters): Prototypical Networks, FaceNet's triplet loss, Koch et al.'s siamese network.

Presets (the CPU runs of WORKSPACE.md; `<method>_tiny` and `tiny` for tests):
  protonet_glyphs  Conv4, episodes of 20 classes x (5 support + 5 query), 5-shot training
  triplet_glyphs   Conv4 + 64-d embedding on the unit sphere, 20 classes x 10 exemplars, margin 0.2
  siamese_glyphs   Koch's layer pattern at 28x28, 64 classes x 2 examples: 64 same + 64 different
                   pairs per step

Departures common to all (each paper's own are in its module's docstring): a few hundred steps
on a 2-core CPU instead of tens of thousands of episodes (Snell et al.) or of pairs (Koch et al.:
up to 150,000 x 8 distortions); Adam(W) with a cosine schedule; Prototypical Networks train with
20 classes per episode (paper: 60) and one training run is evaluated at 1 and 5 shots (paper:
training shots match the test's); FaceNet's batches hold 10 exemplars per class (the glyphs have
20 per class; FaceNet ~40 per identity).
"""

import ml_collections

from experiments.configs import select

METHODS = ('protonet', 'triplet', 'siamese')
_MODELS = {'protonet': 'protonet_conv4', 'triplet': 'facenet_conv4', 'siamese': 'siamese_glyphs'}


def base(method: str = 'protonet') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = method
  c.model = ml_collections.ConfigDict(dict(name=_MODELS[method]))
  c.data = ml_collections.ConfigDict(dict(name='font_glyphs', data_dir=''))
  ways, per_class = {'protonet': (20, 10), 'triplet': (20, 10), 'siamese': (64, 2)}[method]
  c.episode = ml_collections.ConfigDict(dict(ways=ways, per_class=per_class))
  c.protonet = ml_collections.ConfigDict(dict(shots=5))
  c.triplet = ml_collections.ConfigDict(dict(margin=0.2))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=1e-3, schedule='cosine', warmup_steps=20,
      weight_decay=1e-4 if method == 'siamese' else 0.0, grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=300, batch_size=ways * per_class, log_every=50, eval_every=0, checkpoint_every=300,
      max_to_keep=1))
  data = dict(dataset=c.data.get_ref('name'), data_dir=c.data.get_ref('data_dir'), split='test')
  pair = dict(score_fn='pair_scores') if method == 'siamese' else {}
  # Koch et al.'s one-shot trials have one query; 600 episodes of 5 queries per class otherwise.
  queries, episodes = (1, 400) if method == 'siamese' else (5, 600)
  c.evals = ml_collections.ConfigDict(dict(
      few_shot=dict(type='few_shot', fn='features', ways=(5, 20), shots=(1, 5), queries=queries,
                    episodes=episodes, **pair, **data),
      verification=dict(type='verification', fn='features', pairs=3000, **pair, **data),
  ))
  return c


def tiny(method: str = 'protonet') -> ml_collections.ConfigDict:
  c = base(method)
  c.data.name = 'font_glyphs_tiny'
  if method == 'siamese':
    c.model.update(conv_features=(4, 8, 8, 8), hidden=16)
  else:
    c.model.features = 8
  c.episode.update(ways=8, per_class=2 if method == 'siamese' else 4)
  c.protonet.shots = 2
  c.optim.warmup_steps = 2
  c.train.update(steps=4, batch_size=c.episode.ways * c.episode.per_class, log_every=2,
                 checkpoint_every=4)
  c.evals.few_shot.update(ways=(5,), shots=(1, 2), queries=2, episodes=10)
  c.evals.verification.pairs = 40
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  table = {'tiny': tiny}
  for name in METHODS:
    table[f'{name}_glyphs'] = lambda name=name: base(name)
    table[f'{name}_tiny'] = lambda name=name: tiny(name)
  return select(preset, table, default='protonet_glyphs')
