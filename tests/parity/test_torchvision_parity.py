"""Parity with torchvision (and timm's counts) on random weights, through `torchvision_convert`.

Skipped where torchvision is not installed (the default environment: it needs torch 2.14.1, a 5.5 GB
install). `make parity` builds that environment (.venv-parity, the `parity` extra) and runs this file.
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from jaxpapers import zoo  # noqa: E402  (after the skips)
from jaxpapers.convnets import torchvision_convert  # noqa: E402
from jaxpapers.data import pipeline  # noqa: E402
from jaxpapers.train import devices, init_from, loop  # noqa: E402
from jaxpapers.train.state import TrainState  # noqa: E402

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


# scripts/convert.py and init_from: a random-weight torchvision file on disk, converted, fine-tuned.

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_FC = '^params/fc/'  # ImageNet's 1000-way head, replaced by a 10-way one


def _template_images(n, seed):
  """n 32x32x3 images of ten fixed random class templates plus as much noise, and their labels."""
  templates = np.random.default_rng(0).standard_normal((10, 32, 32, 3)).astype(np.float32)
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n)
  return templates[labels] + rng.standard_normal((n, 32, 32, 3)).astype(np.float32), labels


@pytest.fixture(scope='module')
def converted_resnet18(tmp_path_factory):
  """(torchvision resnet18 with random weights, the directory convert.py wrote). Its batch-norm
  statistics are measured on the fine-tuning images, as a pre-trained backbone's would fit them."""
  directory = tmp_path_factory.mktemp('convert')
  reference = _torchvision_model('resnet18')
  _calibrate_batch_norm(reference, 32)
  with torch.no_grad():
    reference.train()
    reference(torch.tensor(_template_images(256, seed=1)[0].transpose(0, 3, 1, 2)))
    reference.eval()
  torch.save(reference.state_dict(), directory / 'resnet18.pth')
  result = subprocess.run(
      [sys.executable, 'scripts/convert.py', '--source=torchvision', '--preset=resnet18',
       f'--weights={directory / "resnet18.pth"}', f'--out={directory / "converted"}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert 'params 11,689,512' in result.stdout, result.stdout
  return reference, str(directory / 'converted')


def test_converted_file_gives_torchvisions_logits(converted_resnet18):
  reference, converted = converted_resnet18
  variables, info = init_from.load_variables(converted)
  assert info['preset'] == 'resnet18' and info['num_params'] == 11_689_512
  x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
  with torch.no_grad():
    expected = reference(x).numpy()
  logits = jax.jit(functools.partial(zoo.build('resnet18').apply, train=False))(
      variables, x.numpy().transpose(0, 2, 3, 1))
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-4 * scale)


class _TenClassResNet18(loop.Experiment):
  """ResNet-18 with a 10-way head on 32x32x3 images of ten noisy class templates."""

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = zoo.build('resnet18', num_classes=10)
    self.tx = optax.adam(1e-3)
    self.data = pipeline.Splits(*(
        pipeline.ArrayRows(dict(zip(('image', 'label'), _template_images(n, seed))))
        for n, seed in ((256, 1), (64, 2))))

  def init(self, rng):
    variables = self.model.init(rng, jnp.zeros((1, 32, 32, 3)), train=False)
    params = variables.pop('params')
    return TrainState.create(params=params, tx=self.tx, rng=rng, model_state=dict(variables))

  def logits(self, state, images, train=False):
    return self.model.apply({'params': state.params, **state.model_state}, images, train=train,
                            mutable=['batch_stats'] if train else False)

  def train_step(self, state, batch):
    def loss_fn(params):
      logits, model_state = self.logits(state.replace(params=params), batch['image'], train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean(), \
          model_state

    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(self.tx, grads, model_state=dict(model_state)), {'loss': loss}

  def eval_step(self, state, batch):
    # With the batch's statistics: a few steps leave batch norm's running averages behind the
    # changed weights, and the test measures the weights.
    logits, _ = self.logits(state, batch['image'], train=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    return {'loss': jnp.sum(loss * batch['mask']), 'count': jnp.sum(batch['mask'])}


def test_fine_tunes_from_the_converted_file(converted_resnet18, tmp_path):
  _, converted = converted_resnet18
  config = ml_collections.ConfigDict(dict(
      seed=0, init_from=converted, init_from_exclude=_FC,
      train=dict(steps=8, batch_size=32, log_every=4, eval_every=0, checkpoint_every=8,
                 max_to_keep=1)))
  # One device: the sharded paths are tested elsewhere, and compile much slower on 8 simulated ones.
  experiment = _TenClassResNet18(config, devices.make_mesh(1))
  # Step 0, as the loop builds it: the backbone is the converted one, the head is new.
  fresh = jax.jit(experiment.init)(jax.random.PRNGKey(0))
  start = init_from.load_into(fresh, converted, exclude=_FC)
  variables, _ = init_from.load_variables(converted)
  loaded = init_from.flatten({'params': start.params, **start.model_state})
  for path, value in init_from.flatten(variables).items():
    if not path.startswith('params/fc/'):
      np.testing.assert_array_equal(np.asarray(loaded[path]), value, err_msg=path)
  assert loaded['params/fc/kernel'].shape == (512, 10)
  np.testing.assert_array_equal(loaded['params/fc/kernel'], fresh.params['fc']['kernel'])

  sums = [jax.device_get(jax.jit(experiment.eval_step)(start, batch))
          for batch in experiment.eval_data()]
  start_loss = sum(s['loss'] for s in sums) / sum(s['count'] for s in sums)

  results = loop.train_and_evaluate(experiment, str(tmp_path))
  assert results['eval']['loss'] < 0.5 * start_loss, (results['eval'], start_loss)
