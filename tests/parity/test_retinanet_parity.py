"""RetinaNet against torchvision's retinanet_resnet50_fpn on random weights, through
`torchvision_convert` (skipped where torchvision is not installed; `make parity`)."""

import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from torchvision.models.detection import backbone_utils, retinanet  # noqa: E402
from torchvision.ops import misc, feature_pyramid_network  # noqa: E402

from jaxpapers import zoo  # noqa: E402
from jaxpapers.convnets import torchvision_convert  # noqa: E402


def _torchvision_retinanet():
  """retinanet_resnet50_fpn as built with pretrained weights (frozen batch norms), random."""
  torch.manual_seed(0)
  body = torchvision.models.resnet50(norm_layer=misc.FrozenBatchNorm2d)
  backbone = backbone_utils._resnet_fpn_extractor(
      body, 5, returned_layers=[2, 3, 4],
      extra_blocks=feature_pyramid_network.LastLevelP6P7(256, 256))
  model = retinanet.RetinaNet(backbone, num_classes=91).eval()
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, buffer in model.named_buffers():  # random frozen-BN statistics and affine
      if name.endswith(('running_var', '.weight')):
        buffer.copy_(torch.rand(buffer.shape, generator=generator) * 0.5 + 0.75)
      elif name.endswith(('running_mean', '.bias')):
        buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
    for p in model.head.parameters():  # larger than the 0.01 init, so the heads' maths shows
      p.copy_(torch.randn(p.shape, generator=generator) * 0.03)
  return model


def test_count_and_head_outputs_equal_torchvisions():
  model = _torchvision_retinanet()
  # The documented 34,014,999 parameters; our BN affine (53,120) are buffers there.
  assert sum(p.numel() for p in model.parameters()) == 34_014_999
  frozen_affine = sum(b.numel() for n, b in model.named_buffers() if n.endswith(('.weight', '.bias')))
  assert zoo.count_params('retinanet_resnet50_fpn') == 34_014_999 + frozen_affine
  ours = zoo.build('retinanet_resnet50_fpn', image_size=(128, 128))
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = torchvision_convert.from_torchvision(ours, state)
  image = np.random.default_rng(0).normal(size=(2, 128, 128, 3)).astype(np.float32)
  with torch.no_grad():
    features = list(model.backbone(torch.from_numpy(image.transpose(0, 3, 1, 2))).values())
    expected = model.head(features)
  out = ours.apply(variables, image, train=False)
  for key, torch_key in (('logits', 'cls_logits'), ('offsets', 'bbox_regression')):
    reference = expected[torch_key].numpy()
    assert out[key].shape == reference.shape
    scale = np.abs(reference).max()
    np.testing.assert_allclose(np.asarray(out[key]) / scale, reference / scale, atol=1e-4)
