"""The 2D class-incremental experiment of "Discrete Key-Value Bottleneck" (Trauble et al. 2022).

arXiv:2207.11240, section 4.1: 8 classes of 2D points learned two at a time, in 4 stages, each
stage seeing only its own two classes; after every stage, accuracy on the test points of all the
classes seen so far. A plain MLP forgets the earlier stages; the bottleneck (`jaxpapers.memory.
kv_bottleneck`, keys fitted without labels, only values trained, plain SGD) keeps them.

    python scripts/kv_bottleneck_2d.py [--steps=500] [--out=runs/kv_bottleneck_2d]

Data (ours; the paper's figure shows a similar layout): class j is a Gaussian blob of standard
deviation 0.15 around (cos 2 pi j / 8, sin 2 pi j / 8); 200 training and 200 test points per class.
The keys are fitted on 4,000 unlabelled points drawn uniformly over [-1.5, 1.5]^2, so nothing
of the later classes' data is seen before their stage. Bottleneck: 4 heads, 100 keys each, 2D
keys under fixed random projections, values of 8 class scores; SGD, learning rate 1. MLP: 2-64-64-8
ReLU, Adam 1e-3 (it forgets with SGD too). Batch 64, `--steps` updates per stage, seed 0.
Prints a markdown table and writes it with the numbers to `<out>/results.json`.
"""

from __future__ import annotations

import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxpapers.memory import kv_bottleneck as kvb

_STEPS = flags.DEFINE_integer('steps', 500, 'Updates per stage.')
_OUT = flags.DEFINE_string('out', 'runs/kv_bottleneck_2d', 'Where results.json goes.')
CLASSES, STAGES = 8, 4


def blobs(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
  labels = np.repeat(np.arange(CLASSES), per_class)
  angles = 2 * np.pi * labels / CLASSES
  points = np.stack([np.cos(angles), np.sin(angles)], 1) + 0.15 * rng.standard_normal(
      (len(labels), 2))
  return points.astype(np.float32), labels.astype(np.int32)


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    for width in (64, 64):
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(CLASSES)(x)


def train_stage(apply, params, tx, opt_state, x, y, steps, seed):
  rng = np.random.default_rng(seed)
  batches = rng.integers(0, len(x), (steps, 64))

  @jax.jit
  def run(params, opt_state, bx, by):
    def step(carry, batch):
      params, opt_state = carry
      xb, yb = batch
      loss, grads = jax.value_and_grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
          apply(p, xb), yb).mean())(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    return jax.lax.scan(step, (params, opt_state), (bx, by))[0]

  return run(params, opt_state, x[batches], y[batches])


def main(argv):
  del argv
  start = time.perf_counter()
  rng = np.random.default_rng(0)
  train_x, train_y = blobs(rng, 200)
  test_x, test_y = blobs(rng, 200)
  unlabelled = rng.uniform(-1.5, 1.5, (4000, 2)).astype(np.float32)

  kv = kvb.KeyValueBottleneck(num_heads=4, num_keys=100, key_dim=2, value_dim=CLASSES)
  kv_vars = kvb.init_keys(kv, kv.init(jax.random.key(0), train_x[:2]), unlabelled)
  codebook = kv_vars['codebook']
  mlp = MLP()
  models = {
      'kv_bottleneck': (lambda p, x: kv.apply({'params': p, 'codebook': codebook}, x),
                        kv_vars['params'], optax.sgd(1.0)),
      'mlp': (lambda p, x: mlp.apply({'params': p}, x),
              mlp.init(jax.random.key(0), train_x[:2])['params'], optax.adam(1e-3)),
  }
  results = {name: [] for name in models}
  for name, (apply, params, tx) in models.items():
    opt_state = tx.init(params)
    for stage in range(STAGES):
      classes = (2 * stage, 2 * stage + 1)
      where = np.isin(train_y, classes)
      params, opt_state = train_stage(apply, params, tx, opt_state, train_x[where],
                                      train_y[where], _STEPS.value, seed=stage)
      predictions = np.asarray(jnp.argmax(apply(params, jnp.asarray(test_x)), -1))
      seen = test_y < 2 * stage + 2
      per_stage = [float(np.mean(predictions[np.isin(test_y, (2 * s, 2 * s + 1))] ==
                                 test_y[np.isin(test_y, (2 * s, 2 * s + 1))]))
                   for s in range(stage + 1)]
      results[name].append({'stage': stage + 1,
                            'accuracy_seen': float(np.mean(predictions[seen] == test_y[seen])),
                            'accuracy_by_stage': per_stage})
  lines = ['| after stage | classes seen | KV bottleneck | MLP | KV: stage-1 classes | MLP: stage-1 '
           'classes |', '|---:|---:|---:|---:|---:|---:|']
  for s in range(STAGES):
    kv_r, mlp_r = results['kv_bottleneck'][s], results['mlp'][s]
    lines.append(f'| {s + 1} | {2 * s + 2} | {kv_r["accuracy_seen"]:.1%} | '
                 f'{mlp_r["accuracy_seen"]:.1%} | {kv_r["accuracy_by_stage"][0]:.1%} | '
                 f'{mlp_r["accuracy_by_stage"][0]:.1%} |')
  table = '\n'.join(lines)
  print(table)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'results.json'), 'w') as f:
    json.dump({'results': results, 'table': table, 'steps': _STEPS.value,
               'wall_time_s': time.perf_counter() - start}, f, indent=1)
  print(f'wall {time.perf_counter() - start:.1f}s')


if __name__ == '__main__':
  app.run(main)
