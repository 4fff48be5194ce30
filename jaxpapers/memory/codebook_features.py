"""Codebook features: a sparse, discrete bottleneck of learned codes inside a network's layers.

"Codebook Features: Sparse and Discrete Interpretability for Neural Networks", Tamkin, Taufeeque,
Goodman 2023, arXiv:2310.17230, section 3: a codebook layer replaces an activation a with the sum
of the k codes of its codebook (C vectors c_i) most similar to it by cosine similarity,

    CB(a) = sum_{i in top-k_i cos(a, c_i)} c_i,

so every downstream layer sees only which k of C codes fired. The codebooks train with the
network on its usual loss. The point the paper makes (section 4, TokFSM): codes come to name
features no single token shows, such as the current state of a finite state machine, with high
precision and recall, while single neurons do so far less cleanly.

Departures and choices: the selection is not differentiable; we pass the loss's gradient to the
layer's input unchanged (straight-through, as VQ-VAE does), out = CB(a) + a - stop_gradient(a),
so the codes get the gradient of their own sum and the layer below keeps learning. Codebooks sit on
the outputs of the Dense layers named by `targets` (default every GPT block's MLP output
`mlp/c_proj`, before the residual addition), attached through `jaxpapers.nn.lora.Adapter`'s
method interception, with a `codebook` parameter [C, d] next to the Dense's kernel, initialised
N(0, 1/d). The indices of the active codes are sown into the `intermediates` collection
(`<dense path>/codes`, [..., k]) for analysis, and the activations a (`<dense path>/inputs`) for
dead-code replacement. A codebook cannot be merged away: `merge` raises.

Dead codes. A code that is never among the top k gets no gradient, so the codes that win the
first updates can win for good (our first TokFSM run: 16 of 256 codes used, the same 16
everywhere). The authors' code (github.com/taufeeque9/codebook-features, `CodebookLayer.
replace_dead_codes`, option `replace_after_steps`) re-initialises them: every that many updates,
each code not selected since the last replacement is set to one of the current batch's
activations drawn at random, and the usage counts restart. We do the same (`code_counts`,
`replace_dead_codes`; the training loop keeps the counts and calls it every `replace_every`
updates), without their optional noise (`replace_rho`). Their TokFSM configuration leaves
replacement off but trains 20,000 updates of 512 walks with 1,000 codes and k = 1, far beyond our
CPU budget.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxpapers.nn import lora

PAPER = ('Codebook Features: Sparse and Discrete Interpretability for Neural Networks (Tamkin, '
         'Taufeeque, Goodman 2023, arXiv:2310.17230)')


def snap(activations: jax.Array, codebook: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """(sum of the k codes most cosine-similar to each activation, their indices [..., k])."""
  a = activations / (jnp.linalg.norm(activations, axis=-1, keepdims=True) + 1e-8)
  c = codebook / (jnp.linalg.norm(codebook, axis=-1, keepdims=True) + 1e-8)
  _, index = jax.lax.top_k(jnp.einsum('...d,cd->...c', a, c), k)
  return jnp.sum(codebook[index], axis=-2), index


@dataclasses.dataclass(frozen=True)
class CodebookFeatures(lora.Adapter):
  """A top-k codebook on the output of every targeted Dense; everything trains."""
  num_codes: int = 256
  k: int = 8
  targets: tuple[str, ...] = ('*/mlp/c_proj',)
  leaf_names = ('codebook',)

  def _intercept(self, dense, inputs, call):
    y = call(inputs)
    if not lora._matches(dense, self.targets):
      return y
    d = y.shape[-1]
    codebook = dense.param('codebook', nn.initializers.normal(d ** -0.5), (self.num_codes, d),
                           dense.param_dtype).astype(y.dtype)
    snapped, index = snap(y, codebook, self.k)
    dense.sow('intermediates', 'codes', index)
    dense.sow('intermediates', 'inputs', y)
    return snapped + y - jax.lax.stop_gradient(y)

  def code_counts(self, intermediates: dict) -> dict[tuple[str, ...], jax.Array]:
    """How often each code was among the top k in one forward pass: {Dense path: int [C]}."""
    return {path[:-1]: jnp.bincount(codes[0].reshape(-1), length=self.num_codes)
            for path, codes in traverse_util.flatten_dict(intermediates).items()
            if path[-1] == 'codes'}

  def replace_dead_codes(self, params: dict, intermediates: dict,
                         counts: dict[tuple[str, ...], jax.Array], key: jax.Array) -> dict:
    """`params` with every code whose count is 0 set to a random activation of this forward
    pass's (`intermediates`, sown by `apply(..., mutable=['intermediates'])`) at its layer."""
    flat = traverse_util.flatten_dict(params)
    inputs = traverse_util.flatten_dict(intermediates)
    for i, (path, count) in enumerate(sorted(counts.items())):
      codebook = flat[path + ('codebook',)]
      x = inputs[path + ('inputs',)][0].reshape(-1, codebook.shape[-1]).astype(codebook.dtype)
      pick = jax.random.choice(jax.random.fold_in(key, i), x.shape[0], (self.num_codes,),
                               replace=x.shape[0] < self.num_codes)
      flat[path + ('codebook',)] = jnp.where((count == 0)[:, None], x[pick], codebook)
    return traverse_util.unflatten_dict(flat)

  def trainable(self, params):
    return jax.tree.map(lambda _: True, params)

  def merge(self, params):
    raise ValueError('codebooks cannot be merged into the base weights; apply them with `apply`')
