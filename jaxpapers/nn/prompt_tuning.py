"""Prompt tuning: "The Power of Scale for Parameter-Efficient Prompt Tuning" (Lester, Al-Rfou,
Constant 2021, arXiv:2104.08691).

Section 2: P learned "soft prompt" vectors are prepended to the embedded input, [P_e; X_e], and
only they train; the frozen model processes the P + T positions as usual. Section 3.2: among the
initialisations tried, copying the embeddings of sampled vocabulary tokens works best; `init`
does that when `vocab_embedding` names the model's token table (default GPT's `wte/embedding`),
from the token ids in `init_tokens` (default printable ASCII, for byte-level models).

Mechanics, on `jaxpapers.nn.lora.Adapter`'s method interception: the input of the module named
by `target` (default GPT's first block `h_0`) gets the parameter `prompt` [P, d] prepended, and
the root module's output drops its first P positions, so the adapted model maps [B, T] tokens to
[B, T, ...] outputs like the base one. Departure: in a model with learned absolute positions
(GPT) the prompt is prepended *after* the position embeddings are added, so the real tokens keep
their pre-trained positions and the prompt vectors carry none (Lester et al.'s T5 uses relative
positions, which a prefix does not shift). Causal attention then lets every token see the
whole prompt. KV-cached decoding (`decode=True`) is not supported; a soft prompt cannot be
merged (`merge` raises).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxpapers.nn import lora


@dataclasses.dataclass(frozen=True)
class PromptTuning(lora.Adapter):
  """P learned input vectors before the first block; outputs trimmed back to the T tokens."""
  length: int = 8
  target: str = 'h_0'
  vocab_embedding: tuple[str, ...] | None = ('wte', 'embedding')
  init_tokens: tuple[int, int] = (32, 127)  # Sampled uniformly from [low, high).
  leaf_names = ('prompt',)

  def _interceptor(self, next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    if kwargs.get('decode'):
      raise ValueError('prompt tuning does not support KV-cached decoding (decode=True)')
    if not module.path:  # The root module: drop the prompt's positions from its output.
      return next_fun(*args, **kwargs)[:, self.length:]
    if '/'.join(module.path) == self.target:
      x = args[0]
      prompt = module.param('prompt', nn.initializers.normal(0.02),
                            (self.length, x.shape[-1])).astype(x.dtype)
      x = jnp.concatenate([jnp.broadcast_to(prompt, x.shape[:1] + prompt.shape), x], axis=1)
      return next_fun(x, *args[1:], **kwargs)
    return next_fun(*args, **kwargs)

  def init(self, model, base_params, rng, *args, **kwargs):
    """Adds the prompt, copied from the embeddings of random tokens when `vocab_embedding` is set."""
    params = super().init(model, base_params, rng, *args, **kwargs)
    if self.vocab_embedding is None:
      return params
    flat = traverse_util.flatten_dict(params)
    table = flat[self.vocab_embedding]
    ids = jax.random.randint(jax.random.fold_in(rng, 1), (self.length,), *self.init_tokens)
    flat[tuple(self.target.split('/')) + ('prompt',)] = jnp.asarray(table)[ids]
    return traverse_util.unflatten_dict(flat)

  def merge(self, params):
    raise ValueError('a soft prompt cannot be merged into the base weights; apply it with `apply`')
