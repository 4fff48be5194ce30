"""BYOL's objective and target network: a predictor regresses the target's projection of the other
view, the target a slow moving average of the online network.

"Bootstrap your own latent: A new approach to self-supervised Learning" (Grill, Strub, Altche,
Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot, Kavukcuoglu, Munos, Valko 2020,
arXiv:2006.07733).

What follows the paper (section 3.1-3.3):
  * The online network is encoder f_theta -> projector g_theta -> predictor q_theta; the target
    network is encoder f_xi -> projector g_xi only (the predictor is online-only, the asymmetry that
    avoids collapse). Projector and predictor: Linear(4096) -> BN -> ReLU -> Linear(256)
    (`heads.MLPHead`).
  * Eq. (2): L = |q_bar - z'_bar|^2 = 2 - 2 <q, z'> / (|q| |z'|) between the normalised prediction of
    view v and the normalised target projection of view v'; eq. (3) symmetrises it by swapping the
    views, L_BYOL = L + L~ (`regression_loss` of both orders, summed), with no gradient into the
    target.
  * Section 3.2: xi <- tau xi + (1 - tau) theta after each step, with
    tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 rising from tau_base = 0.996 to 1 over the K
    training steps (`target_decay`, which is `jaxpapers.train.optim.ema_momentum_schedule`); the
    target is the online player's `ema_params`.
Departure recorded in the config: LARS with a 4096 batch is replaced by AdamW.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxpapers.selfsup.simclr import l2_normalize
from jaxpapers.train import optim

Array = jax.Array

TAU_BASE = 0.996  # section 3.3


def regression_loss(prediction: Array, target: Array) -> Array:
  """Eq. (2) per example, 2 - 2 cos(prediction, target), averaged; no gradient into `target`."""
  p = l2_normalize(prediction.astype(jnp.float32))
  z = lax.stop_gradient(l2_normalize(target.astype(jnp.float32)))
  return jnp.mean(2.0 - 2.0 * jnp.sum(p * z, axis=-1))


def byol_loss(p1: Array, p2: Array, z1_target: Array, z2_target: Array) -> Array:
  """Eq. (3): the online prediction of each view regresses the target projection of the other."""
  return regression_loss(p1, z2_target) + regression_loss(p2, z1_target)


def target_decay(total_steps: int, base: float = TAU_BASE):
  """tau at step k of K (section 3.2): from `base` at k = 0 to 1 at k = K."""
  return optim.ema_momentum_schedule(base, total_steps)
