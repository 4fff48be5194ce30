"""Converts a torchvision or Hugging Face state-dict file into variables a run can start from.

    python scripts/convert.py --source=torchvision --preset=resnet50 --weights=resnet50.pth \
        --out=converted/resnet50
    python -m experiments.classify --config=experiments/configs/classify.py:... \
        --config.init_from=converted/resnet50 --config.init_from_exclude='^params/fc/' ...

`--weights` is a state dict saved to disk: `.pth`/`.pt`/`.bin` (`torch.save`, read with torch) or
`.safetensors` (read with the safetensors package, no torch). The zoo preset picks the converter:
`--source=torchvision` for the torchvision ResNet/WRN/ResNeXt, VGG, AlexNet, GoogLeNet, FCN and
RetinaNet presets (`jaxpapers.convnets.torchvision_convert`) and `ssd300_vgg16`
(`jaxpapers.detection.torchvision_convert`), `--source=huggingface` for GPT-2 (`GPT2LMHeadModel`),
BERT (`BertForPreTraining`) and ViT (`ViTForImageClassification`) presets
(`jaxpapers.transformers.hf_convert`). The converted variables are checked against the preset's
shapes, then written in the layout `jaxpapers.train.init_from` documents (orbax `variables/` plus
`converted.json`). Errors (a file of another architecture, a wrong shape) are one line, exit 1.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from absl import app, flags

from jaxpapers import zoo
from jaxpapers.convnets import torchvision_convert
from jaxpapers.detection import ssd
from jaxpapers.detection import torchvision_convert as detection_convert
from jaxpapers.errors import UserError
from jaxpapers.train import init_from
from jaxpapers.transformers import bert, gpt, hf_convert, vit

SOURCES = ('torchvision', 'huggingface')
_SOURCE = flags.DEFINE_enum('source', None, SOURCES, 'Where the state dict comes from.')
_PRESET = flags.DEFINE_string('preset', None, 'Zoo preset the weights are for, e.g. resnet50.')
_WEIGHTS = flags.DEFINE_string('weights', None, 'The state-dict file (.pth, .bin, .safetensors).')
_OUT = flags.DEFINE_string('out', None, 'New directory for the converted variables.')


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Names -> NumPy arrays (floating point as float32) from a torch or safetensors file."""
  if not os.path.isfile(path):
    raise UserError(f'--weights={path}: no such file')
  if path.endswith('.safetensors'):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise UserError('reading .safetensors needs the safetensors package: '
                      'pip install safetensors') from None
    tensors = load_file(path)
  else:
    try:
      import torch
    except ImportError:
      raise UserError(f'reading {os.path.basename(path)} needs torch (pip install torch), or save '
                      'the state dict as .safetensors') from None
    tensors = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(tensors, dict) or not all(hasattr(v, 'numpy') for v in tensors.values()):
      raise UserError(f'--weights={path} holds a {type(tensors).__name__}, not a state dict '
                      '(names -> tensors); save model.state_dict()')
    tensors = {k: (v.detach().float() if v.is_floating_point() else v.detach()).numpy()
               for k, v in tensors.items()}
  return {k: np.asarray(v, np.float32) if np.issubdtype(v.dtype, np.floating) else np.asarray(v)
          for k, v in tensors.items()}


def convert(source: str, preset: str, state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
  """The Flax variables of zoo `preset` from `state_dict`, checked against the preset's shapes."""
  model = zoo.build(preset)
  try:
    if source == 'torchvision' and isinstance(model, ssd.SSD):
      variables = detection_convert.from_torchvision(model, state_dict)
    elif source == 'torchvision':
      variables = torchvision_convert.from_torchvision(model, state_dict)
    elif isinstance(model, gpt.GPT):
      variables = {'params': hf_convert.gpt2_params(state_dict)}
    elif isinstance(model, (bert.BertForPreTraining, bert.Bert)):
      variables = {'params': hf_convert.bert_params(state_dict)}
    elif isinstance(model, vit.ViT):
      variables = {'params': hf_convert.vit_params(state_dict)}
    else:
      raise UserError(f'no Hugging Face converter for {type(model).__name__} (preset {preset}); '
                      'supported: GPT-2, BERT and ViT presets')
  except (KeyError, ValueError, TypeError) as e:
    raise UserError(f'{source} weights do not convert to {preset}: {e.args[0] if e.args else e}') from e
  check_shapes(variables, zoo.abstract_variables(preset), preset)
  return variables


def check_shapes(variables: Any, expected: Any, preset: str) -> None:
  """One line naming the first difference between the converted tree and the preset's."""
  got = {k: tuple(np.shape(v)) for k, v in init_from.flatten(variables).items()}
  want = {k: tuple(v.shape) for k, v in init_from.flatten(expected).items()}
  missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
  if missing or unexpected:
    raise UserError(f'converted variables do not match preset {preset}: missing {missing[:3]} '
                    f'({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)})')
  for path, shape in want.items():
    if got[path] != shape:
      raise UserError(f'converted variables do not match preset {preset}: {path} has shape '
                      f'{got[path]}, the preset {shape}')


def main(argv: list[str]) -> None:
  del argv
  for flag in (_SOURCE, _PRESET, _WEIGHTS, _OUT):
    if flag.value is None:
      sys.exit(f'error: --{flag.name} is required')
  out = os.path.abspath(_OUT.value)
  try:
    if os.path.exists(out):
      raise UserError(f'--out={_OUT.value} exists; choose a new directory')
    try:
      zoo.get(_PRESET.value)
    except KeyError as e:
      raise UserError(e.args[0]) from None
    weights = os.path.abspath(_WEIGHTS.value)
    variables = convert(_SOURCE.value, _PRESET.value, read_state_dict(weights))
    init_from.save_variables(out, variables, preset=_PRESET.value, source=_SOURCE.value,
                             weights=weights)
  except UserError as e:
    sys.exit(f'error: {e}')
  sizes = ', '.join(f'{c} {n:,}' for c, n in init_from.counts(variables).items())
  print(f'wrote {out}: {_PRESET.value} from {_SOURCE.value} ({sizes} scalars)')


if __name__ == '__main__':
  app.run(main)
