"""Optimisers and learning-rate schedules built from a config, shared by every experiment; the
momentum schedule of target networks (`ema_momentum_schedule`).

config fields: name (sgd | momentum | adam | adamw | lbfgs), learning_rate, schedule (constant | cosine |
warmup_rsqrt | step), warmup_steps, weight_decay, momentum, b1, b2, eps, grad_clip_norm (0 = off);
for `step`, decay_boundaries (steps at which the rate is multiplied by decay_factor, the classic
convnet recipes: ResNet divides by 10 at 32k and 48k iterations).
`lbfgs` (optax's, with its zoom line search choosing the step, so `learning_rate` is unused;
`memory_size` pairs, default 10) is for deterministic objectives such as Gatys et al.'s image
optimisation: its `update` needs `value`, `grad` and `value_fn` keyword arguments, which the other
optimisers accept and ignore.
Weight decay is decoupled (Loshchilov & Hutter 2019, arXiv:1711.05101) and, as in CLIP and most
modern recipes, not applied to biases and normalisation gains: only to parameters with 2+ dimensions.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

from jaxpapers.errors import ConfigError

OPTIMIZERS = ('sgd', 'momentum', 'adam', 'adamw', 'lbfgs')
SCHEDULES = ('constant', 'cosine', 'warmup_rsqrt', 'step')


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  lr, warmup = config.learning_rate, config.get('warmup_steps', 0)
  if config.schedule in ('constant', 'step'):
    if config.schedule == 'constant':
      after_warmup = optax.constant_schedule(lr)
    else:
      boundaries = tuple(config.get('decay_boundaries') or ())
      if not boundaries or sorted(boundaries) != list(boundaries):
        raise ConfigError('config.optim.schedule=step needs increasing config.optim.decay_boundaries '
                          f'(steps), got {boundaries!r}')
      after_warmup = optax.piecewise_constant_schedule(
          lr, {boundary - warmup: config.decay_factor for boundary in boundaries})
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after_warmup],
                                [warmup]) if warmup else after_warmup
  if config.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
  if config.schedule == 'warmup_rsqrt':
    # "Attention Is All You Need" eq. 3 up to the d_model^-0.5 factor, which `learning_rate` absorbs.
    return lambda step: lr * jax.numpy.minimum((step + 1) ** -0.5, (step + 1) * warmup ** -1.5)
  raise ConfigError(f'config.optim.schedule={config.schedule!r}; valid: {", ".join(SCHEDULES)}')


def ema_momentum_schedule(base: float, total_steps: int) -> optax.Schedule:
  """BYOL's target decay (Grill et al. 2020, arXiv:2006.07733, section 3.2): tau = 1 - (1 - base)
  (cos(pi k / K) + 1) / 2 at step k of K, rising from `base` (0.996) to 1; held at 1 after K."""
  gap = optax.cosine_decay_schedule(1.0 - base, max(total_steps, 1))
  return lambda step: 1.0 - gap(step)


def decay_mask(params: Any) -> Any:
  """True for the parameters weight decay applies to: matrices and kernels, not biases or gains."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(config, total_steps)
  if config.name == 'sgd':
    tx = optax.sgd(schedule)
  elif config.name == 'momentum':
    tx = optax.sgd(schedule, momentum=config.momentum, nesterov=config.get('nesterov', False))
  elif config.name == 'adam':
    tx = optax.adam(schedule, b1=config.get('b1', 0.9), b2=config.get('b2', 0.999),
                    eps=config.get('eps', 1e-8))
  elif config.name == 'adamw':
    tx = optax.adamw(schedule, b1=config.get('b1', 0.9), b2=config.get('b2', 0.999),
                     eps=config.get('eps', 1e-8), weight_decay=config.weight_decay, mask=decay_mask)
  elif config.name == 'lbfgs':
    tx = optax.lbfgs(memory_size=config.get('memory_size', 10))
  else:
    raise ConfigError(f'config.optim.name={config.name!r}; valid: {", ".join(OPTIMIZERS)}')
  if config.name in ('sgd', 'momentum') and config.get('weight_decay', 0.0):
    # Classic convnet recipes (AlexNet, VGG, ResNet) add L2 weight decay to the gradient.
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decay_mask), tx)
  if config.get('grad_clip_norm', 0.0):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx
