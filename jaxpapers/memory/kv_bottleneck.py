"""Discrete key-value bottleneck: frozen keys, learned values, updates local to the keys used.

"Discrete Key-Value Bottleneck", Trauble, Goyal, Rahaman, Mozer, Kawaguchi, Bengio, Scholkopf,
2022 (ICML 2023), arXiv:2207.11240, section 3 and the 2D illustration of section 4.1.

    z = f(x)                                  a frozen (pre-trained) encoder; identity here
    z_c = W_c z,  c = 1..C                    C heads, fixed random projections
    i_c = argmin_i ||z_c - k_{c,i}||          the nearest of K keys of head c (frozen after init)
    y = softmax(mean_c v_{c, i_c})            a non-parametric decoder over the selected values

Keys are initialised without labels on the input distribution and then frozen (the paper uses an
exponential-moving-average vector-quantisation update; `init_keys` runs scikit-learn's k-means,
the same objective, on the projected features); the values, one vector of class scores per key,
are the only trained parameters. An example's gradient reaches only the C values it selected, so
learning new classes in a region of input space leaves the values of other regions unchanged.
That is the paper's point, made in its 2D experiment: 8 classes learned 2 at a time, in 4 stages
(`scripts/kv_bottleneck_2d.py`), where an MLP forgets every earlier stage and the bottleneck does
not. Locality needs an optimiser without momentum on the values (momentum keeps moving values
after their gradient has stopped): the script trains them with plain SGD.

The keys and projections live in the `codebook` collection (never in `params`), so an optimiser
over `params` cannot move them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PAPER = ('Discrete Key-Value Bottleneck (Trauble, Goyal, Rahaman, Mozer, Kawaguchi, Bengio, '
         'Scholkopf 2022, arXiv:2207.11240)')


class KeyValueBottleneck(nn.Module):
  """features [B, D] -> logits [B, value_dim]: the mean over heads of each head's nearest key's value.

  `codebook` collection: `projections` [C, D, key_dim] and `keys` [C, K, key_dim] (random at
  init; set them with `init_keys`). `params`: `values` [C, K, value_dim], zero at init.
  """
  num_heads: int = 4
  num_keys: int = 64
  key_dim: int = 2
  value_dim: int = 8
  input_dim: int = 2

  def setup(self):
    c, k, d = self.num_heads, self.num_keys, self.key_dim
    self.projections = self.variable(
        'codebook', 'projections',
        lambda: jax.random.normal(self.make_rng('params'), (c, self.input_dim, d)))
    self.keys = self.variable('codebook', 'keys',
                              lambda: jax.random.normal(self.make_rng('params'), (c, k, d)))
    self.values = self.param('values', nn.initializers.zeros_init(), (c, k, self.value_dim))

  def project(self, features: jax.Array) -> jax.Array:
    """[B, D] -> [B, C, key_dim]."""
    return jnp.einsum('bd,cdk->bck', features, self.projections.value)

  def lookup(self, features: jax.Array) -> jax.Array:
    """The index of each head's nearest key: [B, C]."""
    z = self.project(features)
    distances = jnp.sum((z[:, :, None, :] - self.keys.value[None]) ** 2, axis=-1)  # [B, C, K]
    return jnp.argmin(distances, axis=-1)

  def __call__(self, features: jax.Array) -> jax.Array:
    index = self.lookup(features)
    heads = jnp.arange(self.num_heads)[None, :]
    return jnp.mean(self.values[heads, index], axis=1)  # [B, value_dim]


def init_keys(model: KeyValueBottleneck, variables: dict, features: np.ndarray,
              seed: int = 0) -> dict:
  """`variables` with every head's keys set to k-means centres of its projected `features`."""
  from sklearn.cluster import KMeans  # Only when initialising.
  projected = np.asarray(model.apply(variables, jnp.asarray(features),
                                     method=KeyValueBottleneck.project))
  keys = np.stack([KMeans(model.num_keys, n_init=1, random_state=seed + c).fit(
      projected[:, c]).cluster_centers_ for c in range(model.num_heads)]).astype(np.float32)
  return {**variables, 'codebook': {**variables['codebook'], 'keys': jnp.asarray(keys)}}
