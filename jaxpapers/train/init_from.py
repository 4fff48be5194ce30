"""Starting a run from saved variables: converted torchvision / Hugging Face weights, or any model's.

The layout `save_variables` writes and `load_into` reads (`scripts/convert.py` writes it too):

    <directory>/variables/      an orbax `StandardCheckpointer` checkpoint of the Flax variables
                                {'params': ..., 'batch_stats': ..., ...} as float32 arrays
    <directory>/converted.json  what they are: {"preset", "source", "num_params", "counts"
                                (scalars per collection), ...}

`--config.init_from=<directory>` makes the loop call `load_into` on the freshly initialised state
(a resumed run restores its own checkpoint and ignores it). Arrays are matched by their
'/'-joined path, the collection first: 'params/layer1_0/conv1/kernel', 'batch_stats/bn1/mean'.
`state.params` takes the 'params' collection, `state.model_state` the others, and EMA parameters,
where the state keeps them, are set to the loaded parameters as well. Paths matching
`--config.init_from_exclude` (a regex, `re.search`) keep their fresh initialisation, e.g. a
classifier head for another number of classes: `--config.init_from_exclude='^params/fc/'`.
The optimiser state is kept as initialised: the project's optimisers (moments, step counts) start
from values that do not depend on the parameters.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxpapers.errors import CheckpointError, ConfigError
from jaxpapers.train import checkpoint
from jaxpapers.train.state import TrainState

VARIABLES = 'variables'
INFO = 'converted.json'


def flatten(tree: Any) -> dict[str, Any]:
  """{'params': {'fc': {'kernel': x}}} -> {'params/fc/kernel': x}, for any pytree of arrays."""
  return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _path_name(path: tuple[Any, ...]) -> str:
  names = []
  for key in path:
    for attribute in ('key', 'name', 'idx'):  # DictKey, GetAttrKey, SequenceKey.
      if hasattr(key, attribute):
        names.append(str(getattr(key, attribute)))
        break
  return '/'.join(names)


def counts(variables: Mapping[str, Any]) -> dict[str, int]:
  """Number of scalars in each collection."""
  return {collection: sum(int(np.size(x)) for x in jax.tree.leaves(tree))
          for collection, tree in variables.items()}


def save_variables(directory: str, variables: Mapping[str, Any], **info: Any) -> None:
  """Writes `variables` ({'params': ..., other collections}) and `info` in the layout above.

  `info` (e.g. preset=..., source=...) goes to converted.json with the counts. The directory must
  not hold a previous save.
  """
  directory = os.path.abspath(directory)
  arrays = jax.tree.map(lambda x: np.asarray(x, np.float32), dict(variables))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(directory, VARIABLES), arrays)
  checkpointer.wait_until_finished()
  checkpointer.close()
  summary = {**info, 'num_params': counts(arrays).get('params', 0), 'counts': counts(arrays)}
  with open(os.path.join(directory, INFO), 'w') as f:
    json.dump(summary, f, indent=2)


def load_variables(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """(variables as NumPy arrays, the converted.json info) from a directory `save_variables` wrote."""
  path = os.path.join(os.path.abspath(directory), VARIABLES)
  if not os.path.isdir(path):
    raise ConfigError(f'init_from={directory!r}: no {VARIABLES}/ in it; write one with '
                      'scripts/convert.py (or init_from.save_variables)')
  try:
    variables = checkpoint.restore_as_numpy(path)
  except Exception as e:  # orbax raises ValueError, JSONDecodeError, KeyError, ... by cause.
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise CheckpointError(f'cannot read {path} ({type(e).__name__}: {reason[:300]})') from e
  info_path = os.path.join(os.path.abspath(directory), INFO)
  info = {}
  if os.path.exists(info_path):
    with open(info_path) as f:
      info = json.load(f)
  return variables, info


def load_into(state: TrainState, directory: str, exclude: str = '') -> TrainState:
  """`state` with every array the directory holds at the same path replaced (shardings kept).

  Logs which arrays were loaded and which keep their fresh initialisation (new or excluded);
  raises ConfigError on a shape mismatch, naming the path, or when nothing matches.
  """
  try:
    pattern = re.compile(exclude) if exclude else None
  except re.error as e:
    raise ConfigError(f'init_from_exclude={exclude!r} is not a regular expression ({e})') from None
  saved, info = load_variables(directory)
  saved = flatten(saved)
  if not isinstance(state.model_state, Mapping):
    raise ConfigError('init_from needs model_state to be a dict of variable collections')
  target = {'params': state.params, **state.model_state}
  variables, loaded, fresh = _merge(target, saved, pattern, directory)
  if not loaded:
    raise ConfigError(f'init_from={directory!r}: none of its {len(saved)} arrays is at a path of '
                      f'the model (it has e.g. {next(iter(saved), "none")}; the model '
                      f'{next(iter(flatten(target)), "none")})')
  params = variables.pop('params')
  ema_params = state.ema_params
  if ema_params is not None:
    ema_params = _merge({'params': ema_params}, saved, pattern, directory)[0]['params']
  unused = sorted(set(saved) - set(loaded) - {p for p in saved if pattern and pattern.search(p)})
  origin = ' from '.join(str(info[k]) for k in ('preset', 'source') if k in info)
  logging.info('init_from %s%s: loaded %d arrays (%s scalars), %d initialised fresh (new or '
               'excluded), %d in the checkpoint unused', directory, f' ({origin})' if origin else '',
               len(loaded), f'{sum(int(np.size(saved[p])) for p in loaded):,}', len(fresh),
               len(unused))
  logging.info('init_from loaded: %s', ', '.join(loaded))
  if fresh:
    logging.info('init_from initialised fresh: %s', ', '.join(fresh))
  if unused:
    logging.info('init_from unused: %s', ', '.join(unused))
  return state.replace(params=params, model_state=variables, ema_params=ema_params)


def _merge(target: dict[str, Any], saved: dict[str, np.ndarray], pattern: re.Pattern | None,
           directory: str) -> tuple[dict[str, Any], list[str], list[str]]:
  """`target` with its leaves replaced from `saved`; also the loaded and the fresh paths."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
  loaded, fresh, merged = [], [], []
  for path, leaf in leaves:
    name = _path_name(path)
    if (pattern and pattern.search(name)) or name not in saved:
      fresh.append(name)
      merged.append(leaf)
      continue
    value = saved[name]
    if tuple(value.shape) != tuple(leaf.shape):
      raise ConfigError(
          f'init_from={directory!r}: {name} has shape {tuple(value.shape)} there but '
          f'{tuple(leaf.shape)} in the model; to initialise it fresh instead, pass '
          f"--config.init_from_exclude='^{name.rsplit('/', 1)[0]}/'")
    value = np.asarray(value, leaf.dtype)
    merged.append(jax.make_array_from_callback(leaf.shape, leaf.sharding,
                                               lambda index, v=value: v[index]))
    loaded.append(name)
  return jax.tree_util.tree_unflatten(treedef, merged), loaded, fresh
