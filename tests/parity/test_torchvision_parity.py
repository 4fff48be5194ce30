"""Parity with torchvision (and timm's counts) on random weights, through `torchvision_convert`.

Skipped where torchvision is not installed (the default environment: it needs torch 2.14.1, a 5.5 GB
install). `make parity` builds that environment (.venv-parity, the `parity` extra) and runs this file.
"""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from jaxpapers import zoo  # noqa: E402  (after the skips)
from jaxpapers.convnets import torchvision_convert  # noqa: E402

_TORCHVISION_PRESETS = (
    'alexnet', 'vgg11', 'vgg13', 'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn',
    'googlenet', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d',
    'resnext101_32x8d', 'wide_resnet50_2', 'wide_resnet101_2')


def _torchvision_model(name):
  torch.manual_seed(0)
  # init_weights=True keeps GoogLeNet's documented initialisation (and silences its warning).
  kwargs = {'init_weights': True} if name == 'googlenet' else {}
  return getattr(torchvision.models, name)(weights=None, **kwargs)


@pytest.mark.parametrize('name', _TORCHVISION_PRESETS)
def test_counts_equal_torchvisions(name):
  model = _torchvision_model(name)
  assert zoo.count_params(name) == sum(p.numel() for p in model.parameters())
  assert zoo.get(name).reference_params == zoo.count_params(name)


def test_googlenet_without_aux_heads_count():
  model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
  assert zoo.count_params('googlenet_no_aux') == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('name', ['inception_v4', 'inception_resnet_v2'])
def test_counts_equal_timms(name):
  timm = pytest.importorskip('timm')
  model = timm.create_model(name, pretrained=False)
  assert zoo.count_params(name) == sum(p.numel() for p in model.parameters())


def _calibrate_batch_norm(model, size=224):
  """Random BN affine parameters, then running statistics measured on a random batch, so that
  evaluation-mode batch norm is neither the identity nor blowing activations up."""
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.8, 1.2, generator=generator)
        module.bias.uniform_(-0.1, 0.1, generator=generator)
        module.reset_running_stats()
        module.momentum = None  # Cumulative average: after one batch, that batch's statistics.
    model.train()
    model(torch.randn(4, 3, size, size, generator=generator))
  model.eval()


@pytest.mark.parametrize('name, size, tolerance', [
    ('resnet50', 224, 1e-4), ('vgg16', 224, 1e-4), ('alexnet', 224, 1e-4),
    ('googlenet', 224, 1e-4), ('resnext50_32x4d', 224, 1e-4), ('wide_resnet50_2', 224, 1e-4),
    # The two largest at a small resolution, to keep the test fast (every size uses all weights).
    # Their 101 wide layers accumulate more float32 rounding: on wide_resnet101_2 both frameworks'
    # logits are 7e-4 from the float64 ones (scale 5.8), where the two agree to 1.5e-12.
    ('resnext101_32x8d', 64, 2e-4), ('wide_resnet101_2', 64, 2e-4)])
def test_logits_match_torchvision(name, size, tolerance):
  reference = _torchvision_model(name)
  _calibrate_batch_norm(reference, size)
  x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    expected = reference(x).numpy()
  state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
  model = zoo.build(name)
  variables = torchvision_convert.from_torchvision(model, state_dict)
  logits = jax.jit(functools.partial(model.apply, train=False))(
      variables, x.numpy().transpose(0, 2, 3, 1))
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=tolerance * scale)
  # And back: the exported state dict loads strictly and reproduces torchvision's tensors.
  exported = torchvision_convert.to_torchvision(model, variables)
  reference.load_state_dict({k: torch.tensor(v) for k, v in exported.items()}, strict=True)
  for key, value in state_dict.items():
    if not key.endswith('num_batches_tracked'):
      np.testing.assert_array_equal(exported[key], value)
