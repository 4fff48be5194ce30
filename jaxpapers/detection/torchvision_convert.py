"""torchvision's Mask R-CNN / Faster R-CNN and SSD state dicts -> Flax variables of
`mask_rcnn.MaskRCNN` and `ssd.SSD`.

`from_torchvision(model, state_dict)` takes `maskrcnn_resnet50_fpn(...).state_dict()` (names ->
arrays; also `fasterrcnn_resnet50_fpn`, any num_classes, and the FrozenBatchNorm2d builds, whose
statistics and affine parameters are buffers of the same names) and returns {'params',
'batch_stats'}; or `ssd300_vgg16(...).state_dict()` (any num_classes) and returns {'params'}.
Parity on random weights: tests/parity/test_maskrcnn_parity.py, tests/parity/test_ssd_parity.py.

Module paths follow torchvision's, as in `convnets.torchvision_convert` (whose leaf names and
`torch_module_name` this reuses): the ResNet trunk is `backbone.body.*` unchanged; the FPN's
`lateral{i}` / `output{i}` are `backbone.fpn.inner_blocks.{i}.0` / `layer_blocks.{i}.0`;
`rpn_head.conv` is `rpn.head.conv.0.0`; `box_head`, `box_predictor`, `mask_predictor` sit under
`roi_heads.`, and `mask_head.conv{i}` is `roi_heads.mask_head.{i}.0`. Layouts: convolutions
[out, in, kh, kw] -> [kh, kw, in, out]; the transposed convolution `conv5_mask` [in, out, kh, kw]
-> [kh, kw, in, out] spatially flipped (flax's ConvTranspose without `transpose_kernel` correlates
where torch's scatters); dense layers transposed, fc6's input rows reordered from torch's (C, H, W)
flattening of the 7x7 RoI features to flax's (H, W, C). Strict: missing or unexpected keys, or wrong
shapes, raise.

SSD's modules keep their own names (`ssd_module_names` maps them): torchvision's
`SSDFeatureExtractorVGG` splits VGG-16's `features` Sequential at pool4 into `backbone.features`
(up to conv4_3) and `backbone.extra.0` (pool4, conv5_1..3, then fc6 / fc7 inside a Sequential that
starts with the 3x3 stride-1 pool5), the L2Norm scale is `backbone.scale_weight`, the extra blocks
`backbone.extra.{1..}` and the heads `head.{classification,regression}_head.module_list.{k}`.
Convolutions transpose as above; the heads' channels are (default box, class) in both, so no
permutation is needed.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxpapers.convnets.torchvision_convert import _TORCH_LEAF, torch_module_name
from jaxpapers.detection.mask_rcnn import MaskRCNN
from jaxpapers.detection.ssd import SSD

_RENAMES = ((r'^backbone\.fpn\.lateral(\d+)$', r'backbone.fpn.inner_blocks.\1.0'),
            (r'^backbone\.fpn\.output(\d+)$', r'backbone.fpn.layer_blocks.\1.0'),
            (r'^rpn_head\.conv$', 'rpn.head.conv.0.0'),
            (r'^rpn_head\.', 'rpn.head.'),
            (r'^mask_head\.conv(\d+)$', r'roi_heads.mask_head.\1.0'),
            (r'^(box_head|box_predictor|mask_predictor)\.', r'roi_heads.\1.'))


def torch_key(collection: str, path: tuple[str, ...]) -> str:
  """The state-dict key of the flax leaf at `path` in `collection`."""
  module = torch_module_name(path[:-1])
  for pattern, replacement in _RENAMES:
    module = re.sub(pattern, replacement, module)
  return f'{module}.{_TORCH_LEAF[collection, path[-1]]}'


def _to_flax(path: tuple[str, ...], w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  if w.ndim == 4 and path[-2] == 'conv5_mask':
    return w.transpose(2, 3, 0, 1)[::-1, ::-1]
  if w.ndim == 4:
    return w.transpose(2, 3, 1, 0)
  if w.ndim == 2 and path[-2] == 'fc6':
    channels = shape[0] // 49  # 7x7 RoI features
    return w.reshape(-1, channels, 7, 7).transpose(0, 2, 3, 1).reshape(w.shape).T
  if w.ndim == 2:
    return w.T
  return w


def ssd_module_names(model: SSD) -> dict[str, str]:
  """`SSD`'s module names -> torchvision's `ssd300_vgg16` module names."""
  names, block, index, pools = {}, 'backbone.features', 0, 0
  for i, v in enumerate(model.config):  # torchvision's Sequential indices: conv, relu, pool
    if v == 'M':
      pools += 1
      if pools == 4:  # pool4 opens extra.0
        block, index = 'backbone.extra.0', 0
      if pools < 5:  # pool5 is replaced by the fc Sequential's own pool
        index += 1
      continue
    names[f'features_{i}'] = f'{block}.{index}'
    index += 2
  names.update({'fc6': f'{block}.{index}.1', 'fc7': f'{block}.{index}.3'})
  for i in range(len(model.extra)):
    names.update({f'extra{i}_1': f'backbone.extra.{i + 1}.0',
                  f'extra{i}_2': f'backbone.extra.{i + 1}.2'})
  for k in range(len(model.boxes_per_location)):
    names.update({f'cls{k}': f'head.classification_head.module_list.{k}',
                  f'box{k}': f'head.regression_head.module_list.{k}'})
  return names


@functools.lru_cache(maxsize=4)
def _template(model: MaskRCNN | SSD) -> dict[str, Any]:
  size = model.image_size if isinstance(model, SSD) else 64
  return jax.eval_shape(model.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))


def _torch_keys(model: MaskRCNN | SSD,
                leaves: Mapping[tuple[str, tuple[str, ...]], Any]) -> dict[str, tuple]:
  """The state-dict key of each (collection, path) leaf."""
  if not isinstance(model, SSD):
    return {torch_key(*name): name for name in leaves}
  names = ssd_module_names(model)
  return {('backbone.scale_weight' if path == ('conv4_3_scale',) else
           f'{names[path[0]]}.{_TORCH_LEAF[collection, path[-1]]}'): (collection, path)
          for collection, path in leaves}


def from_torchvision(model: MaskRCNN | SSD, state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision state dict (name -> array) -> Flax variables {'params'[, 'batch_stats']}."""
  leaves = {(collection, path): leaf for collection in ('params', 'batch_stats')
            for path, leaf in traverse_util.flatten_dict(
                _template(model).get(collection, {})).items()}
  keys = _torch_keys(model, leaves)
  given = {k for k in state_dict if not k.endswith('.num_batches_tracked')}
  if set(keys) != given:
    missing, unexpected = sorted(set(keys) - given), sorted(given - set(keys))
    raise KeyError(f'state dict does not match the {type(model).__name__} config: missing '
                   f'{missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})')
  flat: dict[str, dict] = {}
  for key, (collection, path) in keys.items():
    shape = tuple(leaves[collection, path].shape)
    w = _to_flax(path, np.asarray(state_dict[key]), shape)
    if w.shape != shape:
      raise ValueError(f'{key}: shape {np.asarray(state_dict[key]).shape} gives {w.shape}, '
                       f'expected {shape}')
    flat.setdefault(collection, {})[path] = jnp.asarray(np.ascontiguousarray(w))
  return {collection: traverse_util.unflatten_dict(tree) for collection, tree in flat.items()}
