"""Codebook features (Tamkin et al. 2023) and the TokFSM task."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxpapers.data import tok_fsm
from jaxpapers.memory import codebook_features as cbf
from jaxpapers.transformers import gpt


def test_snap_sums_the_k_most_cosine_similar_codes():
  codebook = np.array([[1, 0], [0, 1], [-1, 0], [0.7, 0.7], [10, 1]], np.float32)
  out, index = cbf.snap(np.array([[2.0, 0.1]], np.float32), codebook, 2)
  assert set(np.asarray(index[0]).tolist()) == {0, 4}  # Cosine, not dot product: [10, 1] is 2nd.
  np.testing.assert_allclose(out[0], codebook[0] + codebook[4])


def _tiny_codebook_gpt():
  """A 1-layer GPT with 16 codes (k = 2) on its MLP output, a 6-token input and its parameters."""
  model = gpt.GPT(vocab_size=4, max_len=6, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                  dropout_rate=0.0, attention_dropout_rate=0.0)
  tokens = np.array([[0, 1, 2, 3, 0, 1]], np.int32)
  method = cbf.CodebookFeatures(num_codes=16, k=2)
  params = method.init(model, model.init(jax.random.key(0), tokens)['params'], jax.random.key(1),
                       tokens)
  return model, tokens, method, params


def test_codebook_gpt_outputs_depend_only_on_the_active_codes_and_gradients_flow():
  model, tokens, method, params = _tiny_codebook_gpt()
  out, inter = method.apply(model, {'params': params}, tokens, mutable=['intermediates'])
  codes = inter['intermediates']['h_0']['mlp']['c_proj']['codes'][0]
  chex.assert_shape(codes, (1, 6, 2))
  # Codes nobody selected can change freely without changing the output.
  flat = traverse_util.flatten_dict(params)
  key = ('h_0', 'mlp', 'c_proj', 'codebook')
  unused = np.setdiff1d(np.arange(16), np.asarray(codes))
  flat[key] = flat[key].at[unused].add(5.0)
  chex.assert_trees_all_close(method.apply(model, {'params': traverse_util.unflatten_dict(flat)},
                                           tokens), out, atol=1e-5)
  # Straight-through: the MLP below the codebook and the used codes both get gradients.
  grads = jax.grad(lambda p: jnp.sum(method.apply(model, {'params': p}, tokens) ** 2))(params)
  assert float(jnp.abs(grads['h_0']['mlp']['c_fc']['kernel']).sum()) > 0
  used = np.asarray(jnp.abs(grads['h_0']['mlp']['c_proj']['codebook']).sum(-1) > 0)
  np.testing.assert_array_equal(np.flatnonzero(used), np.unique(np.asarray(codes)))
  with pytest.raises(ValueError, match='cannot be merged'):
    method.merge(params)


def test_fsm_walks_follow_edges_and_valid_next_admits_the_true_next_token():
  fsm = tok_fsm.FSM(num_states=10, edges=3, base=4, digits=2, seed=0)
  tokens, states = fsm.walks(5, 6, np.random.default_rng(0))
  chex.assert_shape(tokens, (5, 12))
  for i in range(5):
    walk = states[i, ::2]
    assert all(b in fsm.successors[a] for a, b in zip(walk[:-1], walk[1:]))
    np.testing.assert_array_equal(tokens[i], fsm.codes[walk].reshape(-1))
  valid = fsm.valid_next(tokens[:, :-1], states[:, :-1])
  assert np.all(np.take_along_axis(valid, tokens[:, 1:, None], -1))
  assert valid[:, 1::2].sum(-1).max() <= 3  # After a state: one of its 3 successors' first digits.


def test_dead_codes_are_replaced_by_current_activations_and_live_codes_kept():
  model, tokens, method, params = _tiny_codebook_gpt()
  forward = lambda p: method.apply(model, {'params': p}, tokens,
                                   mutable=['intermediates'])[1]['intermediates']
  inter = forward(params)
  counts = method.code_counts(inter)
  layer = ('h_0', 'mlp', 'c_proj')
  count = np.asarray(counts[layer])
  assert count.sum() == 6 * 2  # k codes at each of the 6 positions.
  dead = np.flatnonzero(count == 0)
  assert len(dead) >= 16 - 12
  new = method.replace_dead_codes(params, inter, counts, jax.random.key(2))
  old_book = np.asarray(params['h_0']['mlp']['c_proj']['codebook'])
  new_book = np.asarray(new['h_0']['mlp']['c_proj']['codebook'])
  np.testing.assert_array_equal(new_book[count > 0], old_book[count > 0])
  # Each dead code is now one of this pass's activations at its layer...
  activations = np.asarray(inter['h_0']['mlp']['c_proj']['inputs'][0]).reshape(-1, 8)
  distances = np.linalg.norm(new_book[dead][:, None] - activations[None], axis=-1)
  np.testing.assert_allclose(distances.min(1), 0.0, atol=1e-6)
  # ...so the next pass selects replaced codes, which the old codebook never did.
  assert np.asarray(method.code_counts(forward(new))[layer])[dead].sum() > 0
  # The rest of the parameters are untouched.
  np.testing.assert_array_equal(new['h_0']['mlp']['c_proj']['kernel'],
                                params['h_0']['mlp']['c_proj']['kernel'])
