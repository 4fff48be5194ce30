"""Prefix tuning: "Prefix-Tuning: Optimizing Continuous Prompts for Generation" (Li, Liang 2021,
arXiv:2101.00190).

Section 4.2: a prefix of P positions is prepended at *every* layer; its activations are free
parameters P_theta while the language model stays frozen, and every real position attends to
the prefix as to earlier tokens. In a transformer a prefix position enters a layer only through
its key and value, so the parameters here are, per attention layer, P learned keys and P learned
values (the form Hugging Face PEFT's `PrefixTuning` uses, past_key_values):

    attention(q_t, [K_prefix; K_1..T], [V_prefix; V_1..T]),  query t sees the prefix and keys <= t.

Departures: the paper reparametrises P_theta = MLP(P'_theta) during training for stability
(section 4.3) and initialises from real-word activations (section 7.2); we learn the keys and
values directly (PEFT's `prefix_projection=False`), initialised N(0, 1) (PEFT's default
embedding init). Without a prefix weight merge there is no folding: `merge` raises.

Mechanics, on `jaxpapers.nn.lora.Adapter`'s method interception: the `key` and `value` Dense layers
of every targeted `MultiHeadAttention` (paths matched by `targets`, default every `attn`) get a
`prefix` parameter [P, features] and return [prefix; their output]; the attention call itself is
made non-causal with an explicit mask [T, P + T] that lets query t see the prefix and keys <= t
(padding masks given by the caller gain P always-visible columns). KV-cached decoding
(`decode=True`) is not supported.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from jaxpapers.nn import lora
from jaxpapers.nn.attention import MultiHeadAttention


@dataclasses.dataclass(frozen=True)
class PrefixTuning(lora.Adapter):
  """P learned keys and values prepended in every targeted attention layer."""
  length: int = 8
  targets: tuple[str, ...] = ('attn',)
  init_std: float = 1.0
  leaf_names = ('prefix',)

  def _interceptor(self, next_fun, args, kwargs, context):
    module = context.module
    if (isinstance(module, MultiHeadAttention) and context.method_name == '__call__'
        and lora._matches(module, self.targets)):
      if kwargs.get('decode'):
        raise ValueError('prefix tuning does not support KV-cached decoding (decode=True)')
      if (len(args) > 1 and args[1] is not None) or kwargs.get('inputs_kv') is not None:
        raise ValueError('prefix tuning is for self-attention layers')
      q_len = args[0].shape[1]
      mask = kwargs.get('mask')
      visible = jnp.ones((q_len, self.length), bool)
      if kwargs.get('causal'):
        tokens = jnp.arange(q_len)[None, :] <= jnp.arange(q_len)[:, None]
      else:
        tokens = jnp.ones((q_len, q_len), bool)
      full = jnp.concatenate([visible, tokens], axis=1)
      if mask is not None:
        mask = mask.astype(bool)
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
        mask = jnp.concatenate([jnp.ones(mask.shape[:3] + (self.length,), bool), mask], axis=3)
        full = full & mask
      return next_fun(*args, **{**kwargs, 'mask': full, 'causal': False})
    if (isinstance(module, nn.Dense) and context.method_name == '__call__'
        and module.name in ('key', 'value') and isinstance(module.parent, MultiHeadAttention)
        and lora._matches(module.parent, self.targets)):
      y = next_fun(*args, **kwargs)
      prefix = module.param('prefix', nn.initializers.normal(self.init_std),
                            (self.length, y.shape[-1]), module.param_dtype).astype(y.dtype)
      return jnp.concatenate([jnp.broadcast_to(prefix, y.shape[:-2] + prefix.shape), y], axis=-2)
    return next_fun(*args, **kwargs)

  def merge(self, params):
    raise ValueError('a prefix cannot be merged into the base weights; apply it with `apply`')
