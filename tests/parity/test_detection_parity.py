"""Dense prediction and detection against torchvision on random weights: RoIAlign, FCN.

Skipped where torchvision is not installed; `make parity` runs this file in .venv-parity.
"""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from jaxpapers import zoo  # noqa: E402  (after the skips)
from jaxpapers.convnets import torchvision_convert  # noqa: E402
from jaxpapers.detection import roi_align  # noqa: E402


@pytest.mark.parametrize('aligned', [False, True])
@pytest.mark.parametrize('output_size, scale, ratio', [((7, 7), 0.25, 2), ((14, 14), 0.125, 2),
                                                       ((3, 5), 1.0, 3)])
def test_roi_align_matches_torchvision(aligned, output_size, scale, ratio):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 4, 20, 24)).astype(np.float32)  # NCHW
  lo = rng.uniform(-10, 70, (12, 2))
  rois = np.concatenate([lo, lo + rng.uniform(0.5, 60, (12, 2))], 1).astype(np.float32)
  index = rng.integers(0, 2, 12)
  expected = torchvision.ops.roi_align(
      torch.tensor(features), torch.tensor(np.concatenate([index[:, None], rois], 1).astype(np.float32)),
      output_size, spatial_scale=scale, sampling_ratio=ratio, aligned=aligned).numpy()
  out = roi_align.roi_align(features.transpose(0, 2, 3, 1), rois, index, output_size, scale, ratio,
                            aligned)
  np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), expected, atol=1e-5)


def test_fcn_resnet50_matches_torchvision():
  torch.manual_seed(0)
  reference = torchvision.models.segmentation.fcn_resnet50(
      weights=None, weights_backbone=None, aux_loss=True).eval()
  assert zoo.count_params('fcn_resnet50') == sum(p.numel() for p in reference.parameters())
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():  # Random BN statistics, so evaluation-mode BN is not the identity.
    for module in reference.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.1, 0.1, generator=generator)
        module.running_var.uniform_(0.8, 1.2, generator=generator)
    x = torch.randn(1, 3, 96, 128, generator=generator)
    expected = {k: v.numpy() for k, v in reference(x).items()}
  model = zoo.build('fcn_resnet50')
  variables = torchvision_convert.from_torchvision(
      model, {k: v.numpy() for k, v in reference.state_dict().items()})
  out = jax.jit(functools.partial(model.apply, train=False))(variables,
                                                            x.numpy().transpose(0, 2, 3, 1))
  for key in ('out', 'aux'):
    scale = max(1.0, float(np.abs(expected[key]).max()))
    np.testing.assert_allclose(np.asarray(out[key]).transpose(0, 3, 1, 2), expected[key],
                               atol=1e-4 * scale)
