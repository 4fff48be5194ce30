"""Bottleneck adapters: "Parameter-Efficient Transfer Learning for NLP" (Houlsby, Giurgiu,
Jastrzebski, Morrone, de Laroussilhe, Gesmundo, Attariyan, Gelly 2019, arXiv:1902.00751).

Section 2.1 and Figure 2: two adapters per transformer layer, one after the attention output
projection and one after the feed-forward output projection, each applied to the sub-layer's
output before the residual addition:

    adapter(y) = y + W_up f(W_down y + b_down) + b_up,   W_down [d, m], W_up [m, d], m << d,

with its own skip connection, so an adapter whose weights are near zero is near the identity. The
paper initialises every adapter weight from a zero-mean Gaussian of standard deviation 1e-2,
truncated at two standard deviations (biases zero), and trains the adapters and the layer
normalisation parameters (and the task head), keeping everything else frozen. f is GELU here (the
paper's figure shows a generic nonlinearity; its released code uses GELU).

Built on `jaxpapers.nn.lora.Adapter` (method interception of `nn.Dense`; see that module): the
adapter parameters `adapter_down`, `adapter_down_bias`, `adapter_up`, `adapter_up_bias` sit next
to the targeted Dense's kernel. Default targets are GPT's `attn/out` and `mlp/c_proj`; with
`train_layer_norm` the trainable mask also holds the LayerNorms (modules named by
`layer_norm_names`, GPT's `ln_*`). Adapters cannot be merged into the base weights (f is
nonlinear): `merge` raises.
"""

from __future__ import annotations

import dataclasses
import fnmatch

import flax.linen as nn
from flax import traverse_util

from jaxpapers.nn import lora


@dataclasses.dataclass(frozen=True)
class BottleneckAdapter(lora.Adapter):
  """y -> y + up(gelu(down(y))) after every targeted Dense (Houlsby et al. 2019)."""
  bottleneck: int = 16
  init_std: float = 1e-2
  targets: tuple[str, ...] = ('*/attn/out', '*/mlp/c_proj')
  train_layer_norm: bool = True
  layer_norm_names: tuple[str, ...] = ('ln_*',)
  leaf_names = ('adapter_down', 'adapter_down_bias', 'adapter_up', 'adapter_up_bias')

  def _intercept(self, dense, inputs, call):
    y = call(inputs)
    if not lora._matches(dense, self.targets):
      return y
    init = nn.initializers.truncated_normal(self.init_std)  # Truncated at 2 std.
    d = y.shape[-1]
    down = dense.param('adapter_down', init, (d, self.bottleneck), dense.param_dtype)
    down_bias = dense.param('adapter_down_bias', nn.initializers.zeros_init(), (self.bottleneck,),
                            dense.param_dtype)
    up = dense.param('adapter_up', init, (self.bottleneck, d), dense.param_dtype)
    up_bias = dense.param('adapter_up_bias', nn.initializers.zeros_init(), (d,), dense.param_dtype)
    hidden = nn.gelu(y @ down.astype(y.dtype) + down_bias.astype(y.dtype))
    return y + hidden @ up.astype(y.dtype) + up_bias.astype(y.dtype)

  def trainable(self, params):
    """The adapters, and the LayerNorms when `train_layer_norm` (as the paper trains them)."""
    def is_trainable(path, _):
      in_norm = self.train_layer_norm and any(
          fnmatch.fnmatchcase(name, p) for name in path[:-1] for p in self.layer_norm_names)
      return path[-1] in self.leaf_names or in_norm
    return traverse_util.path_aware_map(is_trainable, params)

  def merge(self, params):
    raise ValueError('bottleneck adapters cannot be merged into the base weights (their '
                     'nonlinearity sits between the two projections); apply them with `apply`')
