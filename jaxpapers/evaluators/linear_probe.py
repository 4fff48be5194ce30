"""Linear probes: logistic regression on frozen features, the standard test of a representation.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford et al. 2021,
arXiv:2103.00020), section 3.2 and appendix A.3; SimCLR (arXiv:2002.05709) and the other
self-supervised papers evaluate the same way. L2-regularised multinomial logistic regression with
scikit-learn's objective, fitted by full-batch L-BFGS in JAX (`fit_logistic_regression`, one fit
per regularisation strength, vmapped). C is chosen from `cs` on every fifth training row (fitted on
the rest), as the paper sweeps C on a validation split, then the probe is refitted on every row.
Features are standardised with the training rows' statistics.

Config: `fn` (state, images) -> features [N, D]; `dataset`, `data_dir`; `train_split` and its first
`train_size` examples (0: all); `eval_splits`, {name: split}; `targets`, the label features to
predict. Metrics `<eval name>_<target>`: accuracy. `cache_features`: compute the features once (for
an `fn` that ignores the state, e.g. the untrained network's features as a baseline).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers.evaluators.base import FrozenFeatures


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def fit_logistic_regression(x: jax.Array, labels: jax.Array, weights: jax.Array, l2: jax.Array, *,
                            num_classes: int, steps: int = 300) -> tuple[jax.Array, jax.Array]:
  """Multinomial logistic regression by full-batch L-BFGS, one fit per entry of `l2` (vmapped).

  Minimises mean_i w_i CE(x_i W + b, y_i) / mean_i w_i + l2 / 2 ||W||^2 (the bias is not
  regularised): scikit-learn's `LogisticRegression(C)` objective with l2 = 1 / (C sum_i w_i).
  Rows with weight 0 are left out of the fit, so one compiled program serves every subset.
  Returns (W [len(l2), d, k], b [len(l2), k]).
  """

  def fit(l2):
    def objective(params):
      kernel, bias = params
      loss = optax.softmax_cross_entropy_with_integer_labels(x @ kernel + bias, labels)
      return jnp.sum(loss * weights) / jnp.sum(weights) + 0.5 * l2 * jnp.sum(kernel ** 2)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
      params, state = carry
      value, grad = value_and_grad(params, state=state)
      updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                     value_fn=objective)
      return (optax.apply_updates(params, updates), state), None

    params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros(num_classes))
    (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), length=steps)
    return params

  return jax.vmap(fit)(l2)


def probe_accuracies(train_x: np.ndarray, train_y: np.ndarray, evals: dict[str, tuple],
                     num_classes: int, cs=(0.01, 0.1, 1.0, 10.0)) -> dict[str, float]:
  """Fits one probe on (train_x, train_y) with C chosen as above; accuracy on each (x, y) of `evals`."""
  mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
  x = (train_x - mean) / std
  held = np.arange(len(x)) % 5 == 0
  cs = np.array(cs, np.float32)
  fit_weights = (~held).astype(np.float32)
  kernels, biases = fit_logistic_regression(x, train_y, fit_weights, 1.0 / (cs * fit_weights.sum()),
                                            num_classes=num_classes)
  scores = [np.mean(np.argmax(x[held] @ k + b, axis=1) == train_y[held])
            for k, b in zip(np.asarray(kernels), np.asarray(biases))]
  best = cs[int(np.argmax(scores))]
  kernels, biases = fit_logistic_regression(x, train_y, np.ones(len(x), np.float32),
                                            np.full_like(cs, 1.0 / (best * len(x))),
                                            num_classes=num_classes)
  kernel, bias = np.asarray(kernels[0]), np.asarray(biases[0])
  return {name: float(np.mean(np.argmax((features - mean) / std @ kernel + bias, axis=1) == y))
          for name, (features, y) in evals.items()}


class LinearProbe(FrozenFeatures):
  defaults = {**FrozenFeatures.defaults, 'cs': (0.01, 0.1, 1.0, 10.0)}

  def __call__(self, state, step, writer):
    features = self.features(state)
    results = {}
    for target in self.config['targets']:
      labels = {name: data[target].astype(np.int32) for name, data in self.sets.items()}
      evals = {name: (features[name], labels[name]) for name in self.sets if name != 'train'}
      accuracies = probe_accuracies(features['train'], labels['train'], evals,
                                    self.num_classes[target], self.config['cs'])
      results.update({f'{name}_{target}': value for name, value in accuracies.items()})
    return results
