"""Parameter-efficient fine-tuning: LoRA, IA3 and BitFit for any model built from `nn.Dense`.

LoRA: "LoRA: Low-Rank Adaptation of Large Language Models" (Hu, Shen, Wallis, Allen-Zhu, Li, Wang,
Wang, Chen 2021, arXiv:2106.09685), section 4.1: a frozen weight W0 gains a low-rank update,
h = W0 x + (alpha / r) B A x, with A Gaussian and B zero at the start (so fine-tuning starts from
the pre-trained function), only A and B trained, and W = W0 + (alpha / r) B A merged after training
so inference costs nothing extra. Section 7.1 adapts the attention query and value projections,
the default `targets` here. With Flax's [in, out] kernels the update is x A B with A [in, r] and
B [r, out]. The paper does not give A's variance; we use N(0, 1 / in), so x A has the scale of x
(loralib and Hugging Face PEFT default to Kaiming-uniform, variance 1 / (3 in)).

IA3: "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning"
(Liu, Tam, Muqeeth, Mohta, Huang, Bansal, Raffel 2022, arXiv:2205.05638), section 3.3: learned
vectors, initialised to ones, rescale the attention keys and values (l_k * K, l_v * V) and the
feed-forward hidden activations ((l_ff * gamma(W1 x)) W2). Here l_k and l_v rescale the outputs
of the Dense layers named by `output_targets` (bias included) and l_ff the input of those named by
`input_targets`; both fold exactly into the kernel (and bias) when merged.

BitFit: "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked
Language-models" (Ben Zaken, Ravfogel, Goldberg 2021, arXiv:2106.10199): only the bias terms
train (Dense and LayerNorm biases, here every parameter named `bias` or `*_bias`), plus the
task head the paper also trains (`extra`). It needs no module, only a mask.

The adapters attach to an unmodified model through Flax's method interception: while an adapter is
active (`adapter.init`, `adapter.apply`, or `with adapter.active():`), every `nn.Dense` whose path
matches a target gets the adapter's extra parameters next to its `kernel` and `bias` (so the
parameter tree keeps the base model's layout and pre-trained weights load unchanged) and its output
is modified. Targets are `fnmatch` patterns over the Dense's '/'-joined module path or its name:
'query' matches every query projection, 'h_0/*' every Dense of GPT-2's first block.

`partition_optimizer(tx, trainable)` is the optax side: `optax.multi_transform` applies `tx` to the
trainable leaves and zero updates to the frozen ones, which keep no optimiser state (inside one
jitted step XLA also drops the frozen leaves' gradient computation, as nothing uses it).

Beware jitted helpers that close over `model.apply` (e.g. `gpt.generate`): they cache their trace
without the adapter; merge the adapter first (`adapter.merge(params)`) and call them on the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

Array = jax.Array


def _matches(module: nn.Module, patterns: Sequence[str]) -> bool:
  path = '/'.join(module.path)
  return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(module.name or '', p)
             for p in patterns)


class Adapter:
  """Shared machinery: run a model with the adapter's interceptor; build and merge its params."""
  leaf_names: tuple[str, ...] = ()

  def _intercept(self, dense: nn.Dense, inputs: Array, call) -> Array:
    """The adapted output of `dense` on `inputs`; `call(x)` is the Dense's own computation."""
    raise NotImplementedError

  def _fold(self, node: dict[str, Any]) -> dict[str, Any]:
    """One Dense's parameters (with adapter leaves) -> plain `kernel`/`bias` computing the same."""
    raise NotImplementedError

  def _interceptor(self, next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == '__call__':
      return self._intercept(context.module, args[0], lambda x: next_fun(x, *args[1:], **kwargs))
    return next_fun(*args, **kwargs)

  @contextlib.contextmanager
  def active(self) -> Iterator[None]:
    """Every `nn.Dense` call inside the block is adapted (use inside the traced function)."""
    with nn.intercept_methods(self._interceptor):
      yield

  def init(self, model: nn.Module, base_params: Any, rng: Array, *args, **kwargs) -> Any:
    """`base_params` with this adapter's parameters, freshly initialised, added to the targets.

    `args` and `kwargs` are what `model.init` takes; only the adapter's parameters are computed
    (the base model's fresh ones are traced, then dropped by XLA).
    """
    def adapter_params(rng, *args):
      with self.active():
        flat = traverse_util.flatten_dict(model.init(rng, *args, **kwargs)['params'])
      return {path: value for path, value in flat.items() if path[-1] in self.leaf_names}

    shapes = jax.eval_shape(lambda: model.init(rng, *args, **kwargs)['params'])
    base = traverse_util.flatten_dict(base_params)
    if {p: s.shape for p, s in traverse_util.flatten_dict(shapes).items()} != {
        p: jnp.shape(v) for p, v in base.items()}:
      raise ValueError('base_params do not have the layout of the model the adapter wraps')
    adapters = jax.jit(adapter_params)(rng, *args)
    if not adapters:
      raise ValueError(f'no nn.Dense of the model matches the targets of {self}')
    return traverse_util.unflatten_dict({**base, **adapters})

  def apply(self, model: nn.Module, variables: Any, *args, **kwargs) -> Any:
    """`model.apply` with the adapter active."""
    with self.active():
      return model.apply(variables, *args, **kwargs)

  def trainable(self, params: Any) -> Any:
    """True on this adapter's parameters, False on the (frozen) base model's."""
    return traverse_util.path_aware_map(lambda path, _: path[-1] in self.leaf_names, params)

  def merge(self, params: Any) -> Any:
    """The base model's parameters with the adapter folded in: the same outputs without it."""
    def visit(node):
      if not isinstance(node, dict):
        return node
      node = {k: visit(v) for k, v in node.items()}
      return self._fold(node) if any(k in self.leaf_names for k in node) else node
    return visit(params)


@dataclasses.dataclass(frozen=True)
class LoRA(Adapter):
  """h = x W0 + b + (alpha / rank) x A B on every targeted Dense (A: `lora_a`, B: `lora_b`)."""
  rank: int = 8
  alpha: float = 8.0
  targets: tuple[str, ...] = ('query', 'value')
  leaf_names = ('lora_a', 'lora_b')

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def _intercept(self, dense, inputs, call):
    y = call(inputs)
    if not _matches(dense, self.targets):
      return y
    a = dense.param('lora_a', nn.initializers.lecun_normal(), (inputs.shape[-1], self.rank),
                    dense.param_dtype)
    b = dense.param('lora_b', nn.initializers.zeros_init(), (self.rank, dense.features),
                    dense.param_dtype)
    return y + self.scale * ((inputs @ a.astype(y.dtype)) @ b.astype(y.dtype))

  def _fold(self, node):
    kernel = node['kernel'] + self.scale * node['lora_a'] @ node['lora_b']
    return {**{k: v for k, v in node.items() if k not in self.leaf_names}, 'kernel': kernel}


@dataclasses.dataclass(frozen=True)
class IA3(Adapter):
  """Learned rescaling of the outputs (`ia3_out`) or inputs (`ia3_in`) of the targeted Dense layers.

  Defaults: the attention keys and values, and the input of the second feed-forward layer of GPT
  (`mlp/c_proj`), BERT (`output`), ViT (`fc2`) and the Transformer (`linear2`).
  """
  output_targets: tuple[str, ...] = ('key', 'value')
  input_targets: tuple[str, ...] = ('*/mlp/c_proj', 'output', 'fc2', 'linear2')
  leaf_names = ('ia3_out', 'ia3_in')

  def _intercept(self, dense, inputs, call):
    if _matches(dense, self.input_targets):
      inputs = inputs * dense.param('ia3_in', nn.initializers.ones_init(), (inputs.shape[-1],),
                                    dense.param_dtype).astype(inputs.dtype)
    y = call(inputs)
    if _matches(dense, self.output_targets):
      y = y * dense.param('ia3_out', nn.initializers.ones_init(), (dense.features,),
                          dense.param_dtype).astype(y.dtype)
    return y

  def _fold(self, node):
    node = dict(node)
    if 'ia3_in' in node:
      node['kernel'] = node['kernel'] * node.pop('ia3_in')[:, None]
    if 'ia3_out' in node:
      scale = node.pop('ia3_out')
      node['kernel'] = node['kernel'] * scale
      if 'bias' in node:
        node['bias'] = node['bias'] * scale
    return node


def bitfit_mask(params: Any, extra: Sequence[str] = ()) -> Any:
  """BitFit: True on the bias terms (leaves named `bias` or `*_bias`) and under modules in `extra`.

  `extra` names modules trained in full, such as a new classification head.
  """
  return traverse_util.path_aware_map(
      lambda path, _: path[-1] == 'bias' or path[-1].endswith('_bias') or
      any(name in path[:-1] for name in extra), params)


def partition_optimizer(tx: optax.GradientTransformation, trainable: Any
                        ) -> optax.GradientTransformation:
  """`tx` on the leaves where `trainable` is True; zero updates (and no state) elsewhere."""
  labels = jax.tree.map(lambda t: 'trainable' if t else 'frozen', trainable)
  return optax.multi_transform({'trainable': tx, 'frozen': optax.set_to_zero()}, labels)
