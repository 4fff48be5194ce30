"""Codebook features on TokFSM (Tamkin et al. 2023, arXiv:2310.17230, section 4): codes name states.

    python scripts/codebook_fsm.py [--steps=1500] [--out=runs/codebook_fsm] [--replace_every=100]

Trains a 2-block GPT (width 128, 4 heads) from scratch on walks of a random FSM
(`jaxpapers.data.tok_fsm`: 64 states, 4 edges each, every state written as 3 base-4 digits), once
with a codebook of 256 codes, k = 8, on each block's MLP output (`jaxpapers.memory.
codebook_features`), once without. Reports for each: the transition accuracy (the fraction of
held-out positions where the argmax next token is one a correct model could emit), and, for the
codebook model, how well single codes name the FSM state at the positions that complete a state:
for each code active there at least 20 times, its precision for its most frequent state
(P(state | code)) and recall (P(code | state)); the number of states named by some code with
precision and recall both >= 0.9 (the paper's criterion is the same kind: codes with high precision
and recall for states). Chance precision is 1/64. Adam 1e-3 (cosine), batch 32, seed 0. Dead codes
(unused in `--replace_every` updates) are re-initialised from current activations, as the
authors' code does (`codebook_features.CodebookFeatures.replace_dead_codes`).
Writes `<out>/results.json`.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import traverse_util

from jaxpapers.data import tok_fsm
from jaxpapers.memory import codebook_features as cbf
from jaxpapers.transformers import gpt

_STEPS = flags.DEFINE_integer('steps', 1500, 'Updates per model.')
_OUT = flags.DEFINE_string('out', 'runs/codebook_fsm', 'Where results.json goes.')
_REPLACE_EVERY = flags.DEFINE_integer(
    'replace_every', 100, 'Replace the codes unused in this many updates (0: never).')
STATES, EDGES, BASE, DIGITS, WALK = 64, 4, 4, 3, 22  # 66 tokens per walk.


def fit(apply, params, tx, batches, method=None, replace_every=0):
  """Adam (or `tx`) on next-token prediction over `batches` [steps, B, L]; (params, losses).

  `apply(params, tokens)` returns (logits, {'intermediates': ...}). With a codebook `method` and
  `replace_every` > 0, the codes not selected in the last `replace_every` updates are replaced by
  random activations of the current batch after every `replace_every`-th update.
  """
  @jax.jit
  def train(params, batches):
    def step(carry, inputs):
      params, opt_state, counts = carry
      i, batch = inputs

      def loss_fn(p):
        logits, inter = apply(p, batch[:, :-1])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()
        return loss, inter.get('intermediates', {})

      (loss, inter), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      if method is not None and replace_every > 0:
        counts = jax.tree.map(jnp.add, counts, method.code_counts(inter))
        due = (i + 1) % replace_every == 0
        replaced = method.replace_dead_codes(params, inter, counts, jax.random.fold_in(
            jax.random.key(4), i))
        params = jax.tree.map(lambda new, old: jnp.where(due, new, old), replaced, params)
        counts = jax.tree.map(lambda c: jnp.where(due, 0, c), counts)
      return (params, opt_state, counts), loss

    counts = {} if method is None else jax.tree.map(jnp.zeros_like, method.code_counts(
        apply(params, batches[0, :, :-1])[1]['intermediates']))
    (params, _, _), losses = jax.lax.scan(
        step, (params, tx.init(params), counts), (jnp.arange(len(batches)), batches))
    return params, losses
  return train(params, batches)


def main(argv):
  del argv
  start = time.perf_counter()
  fsm = tok_fsm.FSM(STATES, EDGES, BASE, DIGITS, seed=0)
  train_tokens, _ = fsm.walks(20_000, WALK, np.random.default_rng(1))
  test_tokens, test_states = fsm.walks(256, WALK, np.random.default_rng(2))
  valid = fsm.valid_next(test_tokens[:, :-1], test_states[:, :-1])
  model = gpt.GPT(vocab_size=BASE, max_len=WALK * DIGITS, num_layers=2, num_heads=4,
                  hidden_dim=128, mlp_dim=512, dropout_rate=0.0, attention_dropout_rate=0.0)
  results = {}
  for name, method in (('codebook', cbf.CodebookFeatures(num_codes=256, k=8)), ('plain', None)):
    base = model.init(jax.random.key(0), train_tokens[:2, :-1])['params']
    if method is None:
      params = base
      apply = lambda p, t: model.apply({'params': p}, t, mutable=['intermediates'])
    else:
      params = method.init(model, base, jax.random.key(0), train_tokens[:2, :-1])
      apply = lambda p, t, m=method: m.apply(model, {'params': p}, t, mutable=['intermediates'])
    tx = optax.adam(optax.cosine_decay_schedule(1e-3, _STEPS.value))
    batches = np.random.default_rng(3).integers(0, len(train_tokens), (_STEPS.value, 32))

    params, losses = fit(apply, params, tx, jnp.asarray(train_tokens[batches]), method,
                         _REPLACE_EVERY.value)
    predictions = np.asarray(jnp.argmax(apply(params, test_tokens[:, :-1])[0], -1))
    accuracy = float(np.mean(np.take_along_axis(valid, predictions[..., None], -1)))
    entry = {'final_train_loss': float(np.mean(np.asarray(losses)[-50:])),
             'transition_accuracy': accuracy}
    if method is not None:
      _, inter = apply(params, test_tokens[:, :-1])
      ends = np.arange(DIGITS - 1, WALK * DIGITS - 1, DIGITS)  # Positions completing a state.
      state_at = test_states[:, ends].reshape(-1)
      for path, codes in traverse_util.flatten_dict(inter['intermediates']).items():
        if path[-1] != 'codes':
          continue
        layer = '/'.join(path[:-2])
        active = np.asarray(codes[0])[:, ends].reshape(-1, method.k)  # [positions, k]
        named, precisions = set(), []
        for code in np.unique(active):
          fires = np.any(active == code, axis=1)
          if fires.sum() < 20:
            continue
          counts = np.bincount(state_at[fires], minlength=STATES)
          best = int(np.argmax(counts))
          precision = counts[best] / fires.sum()
          recall = fires[state_at == best].mean()
          precisions.append(float(precision))
          if precision >= 0.9 and recall >= 0.9:
            named.add(best)
        entry[layer] = {'codes_used': int(len(np.unique(active))),
                        'codes_analysed': len(precisions),
                        'median_precision': float(np.median(precisions)) if precisions else 0.0,
                        'states_named_p_r_0.9': len(named)}
    results[name] = entry
    print(name, json.dumps(entry))
  os.makedirs(_OUT.value, exist_ok=True)
  results['wall_time_s'] = time.perf_counter() - start
  with open(os.path.join(_OUT.value, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  print(f'wall {results["wall_time_s"]:.1f}s')


if __name__ == '__main__':
  app.run(main)
