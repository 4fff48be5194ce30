"""SSD300 against torchvision's ssd300_vgg16 on random weights, converted by scripts/convert.py's
`convert` (`detection.torchvision_convert`; skipped where torchvision is not installed;
`make parity`).

torchvision's SSD resizes and normalises its input in `GeneralizedRCNNTransform`; the test feeds an
already-normalised 300x300 image to its backbone and head directly (and our network the same
image), so the comparison is of the raw head outputs: class logits and box regression for every
one of the 8,732 default boxes. The default boxes are compared with those of its
`DefaultBoxGenerator` on the same feature maps (pixels, xyxy; ours relative to the image).
"""

import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from torchvision.models.detection import image_list  # noqa: E402  (after the skips)

from jaxpapers import zoo  # noqa: E402


def test_count_default_boxes_and_head_outputs_equal_torchvisions(convert_script):
  torch.manual_seed(0)
  model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                    num_classes=91).eval()
  assert sum(p.numel() for p in model.parameters()) == zoo.count_params('ssd300_vgg16')
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():  # biases start at 0 and the L2Norm scale at 20: make the maps show
    for name, p in model.named_parameters():
      if name.endswith('.bias'):
        p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    model.backbone.scale_weight.copy_(torch.rand(512, generator=generator) * 20 + 10)
  ours = zoo.build('ssd300_vgg16')
  variables = convert_script.convert(
      'torchvision', 'ssd300_vgg16', {k: v.numpy() for k, v in model.state_dict().items()})

  image = np.random.default_rng(0).normal(size=(2, 300, 300, 3)).astype(np.float32)
  x = torch.from_numpy(image.transpose(0, 3, 1, 2))
  with torch.no_grad():
    features = list(model.backbone(x).values())
    expected = model.head(features)
    anchors = model.anchor_generator(image_list.ImageList(x, [(300, 300)] * 2), features)[0]
  np.testing.assert_allclose(ours.default_boxes() * 300, anchors.numpy(), atol=1e-4)

  logits, offsets = ours.apply(variables, image, train=False)
  for out, key in ((logits, 'cls_logits'), (offsets, 'bbox_regression')):
    reference = expected[key].numpy()
    assert out.shape == reference.shape == (2, 8732, 91 if key == 'cls_logits' else 4)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(np.asarray(out) / scale, reference / scale, atol=1e-4)
