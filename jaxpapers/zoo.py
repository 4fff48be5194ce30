"""The registry of paper presets: name -> constructor, paper, reference parameter count.

Each model file registers its presets when it is imported:

    zoo.register(
        'resnet50', lambda: ResNet(stage_sizes=(3, 4, 6, 3), block='bottleneck'),
        inputs=zoo.image_input(224, 224, 3),
        paper='Deep Residual Learning for Image Recognition (He et al. 2015, arXiv:1512.03385)',
        reference_params=25_557_032, reference_source='torchvision resnet50')

and its module is listed in `MODEL_MODULES`, which `names()`, `get()` and `build()` import first.
Experiments build every network by name, as big_vision resolves `config.model_name`: a config says
`model = dict(name='ddpm_digits')`, optionally with keyword overrides of the preset's fields
(`dropout=0.3`), and the experiment adds what its data decides (`vocab_size`, `max_len`):
`zoo.build_from_config(config.model, vocab_size=...)`. So each architecture is defined once, in its
model file; configs never restate one. `count_params` traces `init` with `jax.eval_shape`: nothing
is allocated, so even the largest presets are counted in seconds.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.errors import ConfigError

# Every module that registers presets. tests/test_zoo.py checks no registering module is missing.
MODEL_MODULES = (
    'jaxpapers.convnets.alexnet',
    'jaxpapers.convnets.googlenet',
    'jaxpapers.convnets.inception',
    'jaxpapers.convnets.lenet',
    'jaxpapers.convnets.nin',
    'jaxpapers.convnets.resnet',
    'jaxpapers.convnets.vgg',
    'jaxpapers.captioning.lrcn',
    'jaxpapers.captioning.show_and_tell',
    'jaxpapers.contrastive.clip',
    'jaxpapers.dense.fc_densenet',
    'jaxpapers.dense.fcn',
    'jaxpapers.dense.fpn',
    'jaxpapers.dense.segnet',
    'jaxpapers.dense.unet',
    'jaxpapers.detection.deformable_detr',
    'jaxpapers.detection.detr',
    'jaxpapers.detection.mask_rcnn',
    'jaxpapers.detection.relationnet_pp',
    'jaxpapers.detection.retinanet',
    'jaxpapers.detection.ssd',
    'jaxpapers.detection.vild',
    'jaxpapers.diffusion.unet',
    'jaxpapers.distill.hinton',
    'jaxpapers.gans.cgan',
    'jaxpapers.gans.dcgan',
    'jaxpapers.gans.gan',
    'jaxpapers.gans.progan',
    'jaxpapers.gans.stylegan',
    'jaxpapers.gans.stylegan2',
    'jaxpapers.gans.stylegan3',
    'jaxpapers.gans.wgan_gp',
    'jaxpapers.metric.facenet',
    'jaxpapers.metric.protonet',
    'jaxpapers.metric.siamese',
    'jaxpapers.nn.mlp',
    'jaxpapers.recurrent.bn_lstm',
    'jaxpapers.recurrent.fast_weights',
    'jaxpapers.recurrent.mann',
    'jaxpapers.selfsup.encoders',
    'jaxpapers.style.johnson',
    'jaxpapers.style.srgan',
    'jaxpapers.transformers.bert',
    'jaxpapers.transformers.gpt',
    'jaxpapers.transformers.transformer',
    'jaxpapers.transformers.vit',
    'jaxpapers.translation.cyclegan',
    'jaxpapers.translation.pix2pix',
    'jaxpapers.translation.spade',
)


@dataclasses.dataclass(frozen=True)
class Preset:
  """One paper configuration of an architecture."""
  name: str
  build: Callable[[], nn.Module]
  # Returns the example inputs (arrays or jax.ShapeDtypeStruct) that `init` is traced on.
  inputs: Callable[[], tuple[Any, ...]]
  paper: str
  reference_params: int | None
  reference_source: str
  # Keyword arguments for `init`/`apply` beyond the inputs (e.g. {'train': False}).
  apply_kwargs: tuple[tuple[str, Any], ...] = ()


_REGISTRY: dict[str, Preset] = {}
_loaded = False


def register(name: str, build: Callable[[], nn.Module], *, inputs: Callable[[], tuple[Any, ...]],
             paper: str, reference_params: int | None, reference_source: str,
             apply_kwargs: dict[str, Any] | None = None) -> None:
  """Adds a preset. Names are unique across the whole library."""
  if name in _REGISTRY:
    raise ValueError(f'zoo preset {name!r} is registered twice')
  _REGISTRY[name] = Preset(name=name, build=build, inputs=inputs, paper=paper,
                           reference_params=reference_params, reference_source=reference_source,
                           apply_kwargs=tuple(sorted((apply_kwargs or {}).items())))


def image_input(height: int, width: int, channels: int, batch: int = 1):
  """`inputs` for an image model taking one NHWC float batch."""
  return lambda: (jax.ShapeDtypeStruct((batch, height, width, channels), jnp.float32),)


def _load_families() -> None:
  global _loaded
  if not _loaded:
    for module in MODEL_MODULES:
      importlib.import_module(module)
    _loaded = True


def names() -> list[str]:
  """Every registered preset, sorted."""
  _load_families()
  return sorted(_REGISTRY)


def get(name: str) -> Preset:
  _load_families()
  if name not in _REGISTRY:
    raise KeyError(f'unknown zoo preset {name!r}; known presets: {", ".join(sorted(_REGISTRY))}')
  return _REGISTRY[name]


def build(name: str, **overrides: Any) -> nn.Module:
  """The module of preset `name`, with `overrides` replacing some of its fields.

  An override names a field of the module (`dropout=0.3`) or, for modules configured by one
  dataclass (the Transformer's and BERT's `config`), a field of that dataclass (`vocab_size=20`).
  """
  module = get(name).build()
  return _with_overrides(module, overrides, name) if overrides else module


def build_from_config(model_config: Mapping[str, Any], **overrides: Any) -> nn.Module:
  """`build(model_config['name'], **the config's other keys, **overrides)`, errors as ConfigError.

  `overrides` are what the experiment derives from its data (vocabulary size, context length);
  they take precedence over the config's keys.
  """
  config = dict(model_config)
  name = config.pop('name', None)
  if name is None:
    raise ConfigError('the model config needs a `name`: a zoo preset, e.g. digits_cnn')
  try:
    return build(name, **{**config, **overrides})
  except KeyError as e:
    raise ConfigError(f'model name {name!r}: {e.args[0]}') from None


def _with_overrides(module: nn.Module, overrides: dict[str, Any], name: str) -> nn.Module:
  fields = {f.name for f in dataclasses.fields(module) if f.init} - {'parent', 'name'}
  direct = {k: v for k, v in overrides.items() if k in fields}
  nested = {k: v for k, v in overrides.items() if k not in fields}
  if nested:
    configs = [f for f in sorted(fields) if dataclasses.is_dataclass(getattr(module, f))
               and not isinstance(getattr(module, f), nn.Module)]
    config_fields = ({f.name for f in dataclasses.fields(getattr(module, configs[0]))}
                     if len(configs) == 1 else set())
    unknown = sorted(set(nested) - config_fields)
    if unknown:
      raise ConfigError(f'zoo preset {name!r} ({type(module).__name__}) has no field '
                        f'{", ".join(map(repr, unknown))}; its fields: '
                        f'{", ".join(sorted(fields | config_fields))}')
    direct[configs[0]] = dataclasses.replace(getattr(module, configs[0]), **nested)
  return module.clone(**direct)


def abstract_variables(name: str) -> Any:
  """The variables of preset `name` as `jax.ShapeDtypeStruct`s (nothing is allocated)."""
  preset = get(name)
  model = preset.build()

  def init(*inputs):
    rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
    return model.init(rngs, *inputs, **dict(preset.apply_kwargs))

  return jax.eval_shape(init, *preset.inputs())


def num_params(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or shape structs."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def count_params(name: str) -> int:
  """Exact parameter count of preset `name`, from shapes alone."""
  variables = abstract_variables(name)
  # Only the 'params' collection: batch statistics and caches are state, not parameters.
  return num_params(variables['params'])
