"""Classification accuracy and cross-entropy of a classifier on a dataset split.

`classification_sums` is the per-batch part, the sums the loop's eval steps return (weighted by the
padding mask, with `count`); `experiments/classify.py`'s eval step is exactly it. The evaluator
(`config.evals` type `classification`) runs it over any split with the experiment's
`fn(state, images) -> logits`, for an experiment whose main evaluation is something else (a
student network under distillation, a backbone during pre-training).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers.data import pipeline
from jaxpapers.evaluators.base import Evaluator, map_batches


def classification_sums(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Summed cross-entropy (`loss`), correct predictions (`accuracy`) and `count` of a masked batch."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = jnp.argmax(logits, -1) == labels
  return {'loss': jnp.sum(loss * mask), 'accuracy': jnp.sum(correct * mask), 'count': jnp.sum(mask)}


class Classification(Evaluator):
  defaults = {'dataset': '', 'data_dir': '', 'split': 'test', 'preprocess': 'image_classification',
              'batch_size': 256}

  def __init__(self, config, fns, mesh):
    super().__init__(config, fns, mesh)
    self.fn = jax.jit(self.fn)  # compiled once for every batch, rather than run op by op
    c = self.config
    source = pipeline.load_source(c['dataset'], c['split'], c['data_dir'] or None)
    examples = pipeline.in_memory(source, pipeline.PREPROCESSORS[c['preprocess']])
    self.images = np.stack([ex['image'] for ex in examples])
    self.labels = np.array([ex['label'] for ex in examples], np.int32)

  def __call__(self, state, step, writer):
    logits = map_batches(self.fn, state, self.images, self.config['batch_size'], self.mesh)
    sums = jax.device_get(classification_sums(logits, self.labels, np.ones(len(self.labels))))
    count = float(sums.pop('count'))
    return {name: float(value) / count for name, value in sums.items()}
