"""Weights between torchvision state dicts and the convnet zoo's Flax variables.

`from_torchvision(model, state_dict)` turns a torchvision model's `state_dict()` (names -> numpy
arrays) into Flax variables {'params', 'batch_stats'} for `ResNet` (torchvision's resnet*,
wide_resnet*, resnext*), `VGG` (vgg*, vgg*_bn), `AlexNet`, `GoogLeNet`, `jaxpapers.dense.fcn.FCN`
(fcn_resnet50/101) and `jaxpapers.detection.retinanet.RetinaNet` (retinanet_resnet50_fpn, whose
FPN and heads are renamed by `_RETINANET_NAMES`), the last two matched by class name: the convnet
zoo does not import the dense or detection families;
`to_torchvision` is the inverse (its output loads into torchvision with
`load_state_dict(..., strict=True)` once made into tensors). Parity on random weights is tested
in tests/parity (needs torchvision).

The Flax modules carry torchvision's module names, with a trailing `_<digits>` standing for a
Sequential index: Flax path ('layer1_0', 'downsample_1') is torch module 'layer1.0.downsample.1'.
Leaves:
  conv kernel [kh, kw, in / groups, out]  <-> weight [out, in / groups, kh, kw]
  dense kernel [in, out]                 <-> weight [out, in], transposed; where the layer reads a
      flattened feature map (AlexNet classifier.1, VGG classifier.0, GoogLeNet aux*.fc1) the
      input rows are also reordered, torch flattening NCHW maps as (C, H, W) and Flax NHWC ones as
      (H, W, C)
  bias <-> bias; batch norm scale <-> weight, bias <-> bias, and in 'batch_stats' mean <->
      running_mean, var <-> running_var; torch's num_batches_tracked has no Flax counterpart
      (ignored on import, 0 on export).
Conversion is strict: a missing or unexpected key, or a wrong shape, raises.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxpapers.convnets.alexnet import AlexNet
from jaxpapers.convnets.googlenet import GoogLeNet
from jaxpapers.convnets.resnet import ResNet
from jaxpapers.convnets.vgg import VGG

_TORCH_LEAF = {('params', 'kernel'): 'weight', ('params', 'bias'): 'bias',
               ('params', 'scale'): 'weight', ('batch_stats', 'mean'): 'running_mean',
               ('batch_stats', 'var'): 'running_var'}
_NUM_BATCHES = 'num_batches_tracked'
# RetinaNet's module paths (after `torch_module_name`) -> torchvision's.
_RETINANET_NAMES = (
    (r'^backbone\.fpn\.lateral(\d+)$', r'backbone.fpn.inner_blocks.\1.0'),
    (r'^backbone\.fpn\.output(\d+)$', r'backbone.fpn.layer_blocks.\1.0'),
    (r'^backbone\.fpn\.extra0$', 'backbone.fpn.extra_blocks.p6'),
    (r'^backbone\.fpn\.extra1$', 'backbone.fpn.extra_blocks.p7'),
    (r'^(classification|regression)_head\.convs\.(\d+)$', r'head.\1_head.conv.\2.0'),
    (r'^classification_head\.predictor$', 'head.classification_head.cls_logits'),
    (r'^regression_head\.predictor$', 'head.regression_head.bbox_reg'))


@dataclasses.dataclass(frozen=True)
class _Leaf:
  collection: str
  path: tuple[str, ...]  # Module names, then the leaf's name.
  torch_key: str
  shape: tuple[int, ...]  # Flax layout.
  # (C, H, W) of the feature map a dense layer reads flattened, else None.
  flattened: tuple[int, int, int] | None

  @property
  def torch_shape(self) -> tuple[int, ...]:
    if len(self.shape) == 4:
      kh, kw, cin, cout = self.shape
      return (cout, cin, kh, kw)
    if len(self.shape) == 2:
      return self.shape[::-1]
    return self.shape

  def to_flax(self, w: np.ndarray) -> np.ndarray:
    if w.ndim == 4:
      return w.transpose(2, 3, 1, 0)
    if w.ndim == 2:
      if self.flattened:
        c, h, width = self.flattened
        w = w.reshape(-1, c, h, width).transpose(0, 2, 3, 1).reshape(w.shape)
      return w.T
    return w

  def to_torch(self, v: np.ndarray) -> np.ndarray:
    if v.ndim == 4:
      return v.transpose(3, 2, 0, 1)
    if v.ndim == 2:
      w = v.T
      if self.flattened:
        c, h, width = self.flattened
        w = w.reshape(-1, h, width, c).transpose(0, 3, 1, 2).reshape(w.shape)
      return w
    return v


def torch_module_name(path: tuple[str, ...]) -> str:
  """('layer1_0', 'downsample_1') -> 'layer1.0.downsample.1'."""
  return '.'.join(re.sub(r'_(\d+)$', r'.\1', name) for name in path)


def _flattened_inputs(model: nn.Module) -> dict[tuple[str, ...], tuple[int, int, int]]:
  if isinstance(model, AlexNet):
    return {('classifier_1',): (256, 6, 6)}
  if isinstance(model, VGG):
    return {('classifier_0',): (512, 7, 7)}
  if isinstance(model, GoogLeNet):
    return {('aux1', 'fc1'): (128, 4, 4), ('aux2', 'fc1'): (128, 4, 4)}
  if isinstance(model, ResNet) or type(model).__name__ in ('FCN', 'RetinaNet'):
    return {}
  raise TypeError(f'no torchvision counterpart for {type(model).__name__}; '
                  'supported: ResNet, VGG, AlexNet, GoogLeNet, FCN, RetinaNet')


@functools.lru_cache(maxsize=8)
def _leaves(model: nn.Module) -> tuple[_Leaf, ...]:
  # Cached: tracing `init` of a deep model takes seconds, and modules compare by their fields.
  flattened = _flattened_inputs(model)
  # Every supported model's parameters are independent of the input size; 224 is torchvision's
  # (RetinaNet checks its input against its anchors' image size).
  height, width = getattr(model, 'image_size', (224, 224))
  template = jax.eval_shape(
      functools.partial(model.init, train=False),
      {'params': jax.random.key(0), 'dropout': jax.random.key(1)},
      jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32))
  renames = _RETINANET_NAMES if type(model).__name__ == 'RetinaNet' else ()
  leaves = []
  for collection in ('params', 'batch_stats'):
    for path, leaf in traverse_util.flatten_dict(template.get(collection, {})).items():
      module = path[:-1]
      name = torch_module_name(module)
      for pattern, replacement in renames:
        name = re.sub(pattern, replacement, name)
      key = f'{name}.{_TORCH_LEAF[collection, path[-1]]}'
      leaves.append(_Leaf(collection, path, key, tuple(leaf.shape), flattened.get(module)))
  return tuple(leaves)


def _batch_norm_modules(leaves: tuple[_Leaf, ...]) -> list[str]:
  return sorted({leaf.torch_key.rsplit('.', 1)[0] for leaf in leaves
                 if leaf.collection == 'batch_stats'})


def torchvision_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
  """The keys and shapes of the torchvision state dict that corresponds to `model`."""
  leaves = _leaves(model)
  shapes = {leaf.torch_key: leaf.torch_shape for leaf in leaves}
  shapes.update({f'{m}.{_NUM_BATCHES}': () for m in _batch_norm_modules(leaves)})
  return shapes


def from_torchvision(model: nn.Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision state dict (name -> array) -> Flax variables {'params', 'batch_stats'}."""
  leaves = _leaves(model)
  expected = {leaf.torch_key for leaf in leaves}
  given = {k for k in state_dict if not k.endswith('.' + _NUM_BATCHES)}
  if expected != given:
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    raise KeyError(f'state dict does not match {type(model).__name__}: '
                   f'missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} '
                   f'({len(unexpected)})')
  flat: dict[str, dict] = {}
  for leaf in leaves:
    w = np.asarray(state_dict[leaf.torch_key])
    if w.shape != leaf.torch_shape:
      raise ValueError(f'{leaf.torch_key}: shape {w.shape}, expected {leaf.torch_shape}')
    flat.setdefault(leaf.collection, {})[leaf.path] = jnp.asarray(leaf.to_flax(w))
  return {collection: traverse_util.unflatten_dict(tree) for collection, tree in flat.items()}


def to_torchvision(model: nn.Module, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Flax variables -> torchvision state dict (name -> numpy array), num_batches_tracked = 0."""
  leaves = _leaves(model)
  flat = {c: traverse_util.flatten_dict(variables[c]) for c in {leaf.collection for leaf in leaves}}
  expected = {(leaf.collection, leaf.path) for leaf in leaves}
  given = {(c, path) for c, tree in flat.items() for path in tree}
  if expected != given:
    raise KeyError(f'variables do not match {type(model).__name__}: missing '
                   f'{sorted(expected - given)[:5]}, unexpected {sorted(given - expected)[:5]}')
  state_dict = {leaf.torch_key: np.ascontiguousarray(leaf.to_torch(np.asarray(
      flat[leaf.collection][leaf.path]))) for leaf in leaves}
  state_dict.update({f'{m}.{_NUM_BATCHES}': np.zeros((), np.int64)
                     for m in _batch_norm_modules(leaves)})
  return state_dict
