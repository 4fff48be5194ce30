"""The registry of paper presets: name -> constructor, paper, reference parameter count.

Each model family registers its presets when its module is imported:

    zoo.register(
        'resnet50', lambda: ResNet(stage_sizes=(3, 4, 6, 3), block='bottleneck'),
        inputs=zoo.image_input(224, 224, 3),
        paper='Deep Residual Learning for Image Recognition (He et al. 2015, arXiv:1512.03385)',
        reference_params=25_557_032, reference_source='torchvision resnet50')

`names()`, `get()`, `build()` and `count_params()` import every family package under `jaxpapers`
first, so a preset is found wherever it is defined. `count_params` traces `init` with
`jax.eval_shape`: no weights are allocated, so even the largest presets are counted in seconds.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Packages that hold infrastructure, not models; they register no presets.
_NOT_FAMILIES = ('train', 'data', 'metrics')


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
  if _loaded:
    return
  import jaxpapers
  for info in pkgutil.walk_packages(jaxpapers.__path__, prefix='jaxpapers.'):
    top = info.name.split('.')[1]
    if top not in _NOT_FAMILIES and info.name != __name__:
      importlib.import_module(info.name)
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


def build(name: str) -> nn.Module:
  return get(name).build()


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
