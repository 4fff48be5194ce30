"""Improved Training of Wasserstein GANs (Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville 2017,
arXiv:1704.00028).

Algorithm 1 (WGAN with gradient penalty): for each generator update, n_critic = 5 critic updates,
each on a batch of real x, generated x~ = G(z) and, per example, eps ~ U[0, 1] and the interpolate
x^ = eps x + (1 - eps) x~, minimising (eq. 3)

    L = D(x~) - D(x) + lambda (||grad_x^ D(x^)||_2 - 1)^2,     lambda = 10,

averaged over the batch (`critic_loss`, `gradient_penalty`); then the generator minimises -D(G(z))
(`generator_loss`). Both with Adam(alpha = 1e-4, beta1 = 0, beta2 = 0.9) (the experiment's config).
Section 4: no batch normalisation in the critic, since the penalty is on each input's gradient
alone and batch statistics would make an example's score depend on the rest of the batch (the
paper suggests layer normalisation as a drop-in; the critic here has none):
`jaxpapers.gans.dcgan.Discriminator(use_batch_norm=False)`.

The penalty's gradient is of the sum of the critic's scores over the batch with respect to the
interpolates: without cross-example terms, row i of that gradient is grad_x D(x^_i). The critic is
then differentiated through that gradient (double backpropagation), which JAX's `jax.grad` of a
function calling `jax.grad` gives directly.

ProGAN trains with this loss plus a drift term epsilon_drift E[D(x)^2], epsilon_drift = 0.001
(its appendix A.1), `critic_loss(..., drift_weight=DRIFT_WEIGHT)`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.gans import dcgan

_PAPER = 'Improved Training of Wasserstein GANs (Gulrajani et al. 2017, arXiv:1704.00028)'

GP_WEIGHT = 10.0  # lambda of Algorithm 1
# ProGAN (Karras et al. 2017, arXiv:1710.10196, appendix A.1): epsilon_drift, keeping the critic's
# real scores near 0.
DRIFT_WEIGHT = 0.001


def interpolates(real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
  """x^ = eps x + (1 - eps) x~ with one eps ~ U[0, 1] per example."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  return eps * real + (1.0 - eps) * fake


def gradient_norms(critic: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """||grad_x D(x_i)||_2 for every row of x, for a critic mapping [B, ...] to scores [B]."""
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x)
  # A small constant inside the root keeps the norm differentiable where the gradient is 0.
  return jnp.sqrt(jnp.sum(grads.reshape(x.shape[0], -1) ** 2, axis=-1) + 1e-12)


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     key: jax.Array) -> jax.Array:
  """E[(||grad_x^ D(x^)||_2 - 1)^2] over the interpolates of `real` and `fake`."""
  return jnp.mean((gradient_norms(critic, interpolates(real, fake, key)) - 1.0) ** 2)


def critic_loss(real_scores: jax.Array, fake_scores: jax.Array, penalty: jax.Array,
                gp_weight: float = GP_WEIGHT, drift_weight: float = 0.0) -> jax.Array:
  """E[D(x~)] - E[D(x)] + lambda * penalty (Algorithm 1, line 7, averaged over the batch), plus
  ProGAN's drift term drift_weight * E[D(x)^2] on the real scores (`DRIFT_WEIGHT`)."""
  drift = drift_weight * jnp.mean(jnp.square(real_scores))
  return jnp.mean(fake_scores) - jnp.mean(real_scores) + gp_weight * penalty + drift


def generator_loss(fake_scores: jax.Array) -> jax.Array:
  """-E[D(G(z))] (Algorithm 1, line 11)."""
  return -jnp.mean(fake_scores)


class MLPCritic(nn.Module):
  """images [B, H, W, C] -> scores [B]: a ReLU MLP with no normalisation (the paper's toy-data
  critic is 3 ReLU layers of 512 units)."""
  hidden: Sequence[int] = (256, 256, 256)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    del train
    h = images.reshape(images.shape[0], -1)
    for features in self.hidden:
      h = nn.relu(nn.Dense(features)(h))
    return nn.Dense(1)(h)[:, 0]


# The digits critic (its generator is `gan_digits_generator`, so GAN and WGAN-GP differ only in
# the game): Dense 64->256, 256->256, 256->256, 256->1.
zoo.register('wgan_gp_digits_critic', MLPCritic, inputs=zoo.image_input(8, 8, 1), paper=_PAPER,
             apply_kwargs={'train': False}, reference_params=65 * 256 + 2 * 257 * 256 + 257,
             reference_source='closed form')
# The DCGAN critic of Algorithm 1 for 32x32 images: no BatchNorm, convolutions with biases.
zoo.register('wgan_gp_32_critic', lambda: dcgan.Discriminator(use_batch_norm=False),
             inputs=zoo.image_input(32, 32, 3), paper=_PAPER, apply_kwargs={'train': False},
             reference_params=16 * (3 * 64 + 64 * 128 + 128 * 256 + 256) + 64 + 128 + 256 + 1,
             reference_source='closed form')
