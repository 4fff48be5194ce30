"""ViLD: "Open-vocabulary Object Detection via Vision and Language Knowledge Distillation" (Gu, Lin,
Kuo, Cui 2021, arXiv:2104.13921), on the project's two-stage detector (`mask_rcnn.MaskRCNN`: its
backbone, RPN, RoI sampling and box head are used unchanged).

* Region embeddings (sec. 3.2): the box head's 1024-d (here `representation_size`) RoI feature is
  projected to the text-embedding width and L2-normalised: r = R(phi(I), proposal).
* ViLD-text (sec. 3.2, eq. for L_ViLD-text): the classifier is the frozen, precomputed text
  embeddings of the class names plus a learned background embedding e_bg; the logits are the cosine
  similarities over the temperature tau (paper: 0.01), `text_logits`; cross-entropy of the sampled
  RoIs over the base classes and the background (the novel ones are masked out of the softmax by
  `class_valid`). The text embeddings get no gradient (`stop_gradient`). At inference the novel
  classes' text embeddings are simply more rows of the classifier (open vocabulary): the base-class
  logits do not change.
* ViLD-image (sec. 3.3): L1 distance between the region embeddings of M precomputed proposals per
  image and the teacher's (CLIP image tower's) normalised embeddings of those proposals' crops,
  summed over the embedding and averaged over the proposals, `image_distillation_loss`.
  `teacher_embeddings` computes the teacher targets: each box, scaled about its centre by each of
  `scales` (clipped to the image), cropped by RoIAlign (aligned, to the tower's input size) and
  encoded; the normalised embeddings of the scales are summed (and the sum normalised again, as the
  region embedding it is compared with is a unit vector). The paper's scales are 1 and 1.5
  (introduced with the cropped-region classifier of sec. 3.1, reused for ViLD-image). On the scenes
  the project's CLIP names tight crops badly (it was trained on shapes framed with a margin: the
  proposals on crosses are named cross 5% of the time at 1 + 1.5, 65% at 2 + 2.5), so
  `experiments/detect.py` uses 2 and 2.5 (WORKSPACE.md).
  As the paper (secs. 3.3 and 4), the proposals and their teacher embeddings are computed once,
  offline, by `scripts/vild_precompute.py`: the top M (8) proposals per training image of an RPN
  trained on the base classes (a `fasterrcnn_base_scenes` run, its first stage at inference
  settings, `MaskRCNN.inference_rois`), encoded by `teacher_embeddings`; `experiments/detect.py`
  (detector `vild`) feeds each training image its own, and `losses` takes them as inputs.
* Loss (the objective the paper names ViLD, secs. 3.3-3.4): L = L_ViLD-text + w L_ViLD-image
  (paper: w = 0.5 on LVIS) plus the RPN's losses and the box regression; the box regression is
  class-agnostic (one set of 4 offsets per RoI, as the paper's, so that novel classes get boxes),
  smooth L1 of the positives as in `mask_rcnn`. Inference: softmax over the background and every
  class whose text embedding is given, class-agnostic boxes, then `mask_rcnn.detect_boxes` (score
  threshold, per-class NMS, top detections).

* ViLD-ensemble (sec. 3.4, `ensemble=True`): a second head of the same shape (its own two-layer
  MLP box head and projection, on the shared RoI features) trained by ViLD-image alone, while the
  first head gets ViLD-text alone. At inference each head's probabilities are combined by a
  weighted geometric mean, p = p_text^lambda p_image^(1 - lambda) for the base classes and
  p_text^(1 - lambda) p_image^lambda for the novel ones (lambda = 2/3, `ensemble_weight`); p_text
  is the softmax over background and classes, p_image the softmax over the classes (the image head
  never learns a background); the background's probability is p_text's. The authors' released
  code (`double_branch`) weighs the two the other way round for its rare classes; this follows the
  paper's text.

Left out: the R-CNN-style baseline of sec. 3.1 (CLIP classifying cropped proposals);
the mask head (the paper's is class-agnostic; `masks` must be False here); prompt ensembling of the
class names (the caller precomputes one text embedding per class, e.g. with the project's CLIP text
tower). The teacher's input normalisation is the caller's: `teacher_embeddings` crops the images it
is given. Training labels must be base classes (`class_valid` True): a masked class has no finite
cross-entropy (`scenes.base_only` removes the novel annotations).

`vild_scenes`: `maskrcnn_scenes`' backbone, RPN and 256-d box head without the mask branch, with
region embeddings of 128 (the `clip_shapes_vit` / `clip_shapes_resnet` embedding width). Its
parameters are `maskrcnn_scenes`' less the mask head and predictor and the class-specific box
predictor, plus the projection (256 * 128 + 128), the class-agnostic regression (256 * 4 + 4) and
the background embedding (128); no reference implementation (a project preset).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.contrastive.clip import l2_normalize
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection import mask_rcnn
from jaxpapers.detection.roi_align import roi_align


def text_logits(regions: jax.Array, text_embeddings: jax.Array, background: jax.Array,
                temperature: float) -> jax.Array:
  """Logits [..., 1 + C]: cos(r, e) / tau of region embeddings [..., D] (unit vectors) with the
  background embedding [D] (column 0) and the class text embeddings [C, D] (frozen)."""
  classes = jnp.concatenate([background[None], jax.lax.stop_gradient(text_embeddings)])
  return regions @ l2_normalize(classes).T / temperature


def image_distillation_loss(regions: jax.Array, teacher: jax.Array, valid: jax.Array) -> jax.Array:
  """L_ViLD-image: ||r - v||_1 of region embeddings [..., M, D] and teacher embeddings (normalised)
  [..., M, D], averaged over the valid [..., M] proposals."""
  l1 = jnp.abs(regions - jax.lax.stop_gradient(teacher)).sum(-1)
  return jnp.sum(l1 * valid) / jnp.maximum(valid.sum(), 1)


def enlarge_boxes(boxes: jax.Array, factor: float, image_size: Sequence[int]) -> jax.Array:
  """Boxes [..., 4] scaled by `factor` about their centres and clipped to the image."""
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2
  half = (boxes[..., 2:] - boxes[..., :2]) * factor / 2
  return mask_rcnn.clip_to_image(jnp.concatenate([centre - half, centre + half], -1), image_size)


def teacher_embeddings(encode_image: Callable[[jax.Array], jax.Array], images: jax.Array,
                       boxes: jax.Array, crop_size: int,
                       scales: tuple[float, ...] = (1.0, 1.5)) -> jax.Array:
  """The teacher's normalised embeddings [B, M, D] of boxes [B, M, 4] of images [B, H, W, 3]: the
  normalised sum over `scales` of `encode_image`'s (e.g. a CLIP image tower, crops [K, s, s, 3] ->
  [K, D]) normalised embedding of the box's crop at that scale (module docstring)."""
  b, m = boxes.shape[:2]
  index = jnp.repeat(jnp.arange(b), m)

  def embed(scale):
    crop_boxes = enlarge_boxes(boxes, scale, images.shape[1:3]) if scale != 1 else boxes
    crops = roi_align(images, crop_boxes.reshape(-1, 4), index, (crop_size, crop_size),
                      aligned=True)
    return l2_normalize(encode_image(crops))

  out = l2_normalize(sum(embed(scale) for scale in scales))
  return jax.lax.stop_gradient(out.reshape(b, m, -1))


class ViLD(mask_rcnn.MaskRCNN):
  """`model(images [B, H, W, 3], text_embeddings [C, D])` -> detections {'boxes' [B, N, 4],
  'scores' [B, N] (0: none), 'labels' [B, N] (1 + row of `text_embeddings`)};
  `model.apply(..., method='losses')` the training losses. `config.num_classes` is unused (the
  vocabulary is the text embeddings given)."""
  embed_dim: int = 128
  temperature: float = 0.01
  image_loss_weight: float = 0.5
  ensemble: bool = False  # ViLD-ensemble: a separate head for ViLD-image (module docstring)
  ensemble_weight: float = 2 / 3  # lambda

  def setup(self):
    c = self.config
    if c.masks:
      raise ValueError('ViLD here has no mask branch: use a config with masks=False')
    self.backbone = mask_rcnn.ResNetFPN(c.stage_sizes, c.block, c.fpn_features,
                                        extra_max_pool=True)
    self.rpn_head = mask_rcnn.RPNHead(len(c.aspect_ratios))
    self.box_head = mask_rcnn.TwoMLPHead(c.representation_size)
    init = conv_layers.torch_linear_init
    self.projection = nn.Dense(self.embed_dim, kernel_init=init)
    self.bbox_pred = nn.Dense(4, kernel_init=init)
    self.background = self.param('background', nn.initializers.normal(1.0), (self.embed_dim,))
    if self.ensemble:
      self.image_box_head = mask_rcnn.TwoMLPHead(c.representation_size)
      self.image_projection = nn.Dense(self.embed_dim, kernel_init=init)

  def region_outputs(self, features: Sequence[jax.Array], rois: jax.Array):
    """Region embeddings [B, R, D] (unit vectors) and class-agnostic offsets [B, R, 4]."""
    b, r = rois.shape[:2]
    x = self.box_head(self._pool(features, rois, 7))
    regions = l2_normalize(self.projection(x))
    return regions.reshape(b, r, -1), self.bbox_pred(x).reshape(b, r, 4)

  def image_regions(self, features: Sequence[jax.Array], rois: jax.Array) -> jax.Array:
    """The region embeddings [B, R, D] ViLD-image distills: the ensemble's image head's, else
    the one head's."""
    if not self.ensemble:
      return self.region_outputs(features, rois)[0]
    b, r = rois.shape[:2]
    x = self.image_box_head(self._pool(features, rois, 7))
    return l2_normalize(self.image_projection(x)).reshape(b, r, -1)

  def classify(self, regions: jax.Array, text_embeddings: jax.Array) -> jax.Array:
    return text_logits(regions, text_embeddings, self.background, self.temperature)

  def class_probs(self, features: Sequence[jax.Array], rois: jax.Array,
                  text_embeddings: jax.Array, class_valid: jax.Array | None = None):
    """Probabilities [B, R, 1 + C] of the background and each class, and class-agnostic offsets
    [B, R, 4]: the text head's softmax, or the ensemble's weighted geometric mean (docstring)."""
    regions, box_deltas = self.region_outputs(features, rois)
    probs = jax.nn.softmax(self.classify(regions, text_embeddings), -1)
    if self.ensemble:
      image_probs = jax.nn.softmax(
          self.image_regions(features, rois) @ text_embeddings.T / self.temperature, -1)
      base = (jnp.ones(text_embeddings.shape[0], bool) if class_valid is None
              else jnp.asarray(class_valid))
      weight = jnp.where(base, self.ensemble_weight, 1 - self.ensemble_weight)
      probs = probs.at[..., 1:].set(probs[..., 1:] ** weight * image_probs ** (1 - weight))
    return probs, box_deltas

  def __call__(self, images: jax.Array, text_embeddings: jax.Array,
               class_valid: jax.Array | None = None, train: bool = False) -> dict[str, jax.Array]:
    """`class_valid` [C]: the base classes (the ensemble weighs its heads by it; default all)."""
    features, rois, valid = self.inference_rois(images, train)
    probs, box_deltas = self.class_probs(features, rois, text_embeddings, class_valid)
    box_deltas = jnp.broadcast_to(box_deltas[:, :, None], (*probs.shape, 4))
    boxes, scores, labels = jax.vmap(functools.partial(
        mask_rcnn.detect_boxes, image_size=images.shape[1:3], config=self.config))(
            probs, box_deltas, rois, valid)
    return {'boxes': boxes, 'scores': scores, 'labels': labels}

  def losses(self, images: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array, key: jax.Array,
             text_embeddings: jax.Array, class_valid: jax.Array | None = None,
             image_boxes: jax.Array | None = None, image_embeddings: jax.Array | None = None,
             image_valid: jax.Array | None = None, train: bool = True) -> dict[str, jax.Array]:
    """Training losses: ground truth [B, G, 4] / [B, G] (row of `text_embeddings` [C, D], -1 for
    padding), `class_valid` [C] the training (base) classes (default all), and for ViLD-image the
    M proposals per image `image_boxes` [B, M, 4] with their teacher embeddings [B, M, D]
    (`teacher_embeddings`) and validity [B, M]. Returns 'loss' and its terms."""
    features, terms, rois, labels, gt_index = self.rpn_and_rois(images, gt_boxes, gt_labels, key,
                                                                train)
    regions, box_deltas = self.region_outputs(features, rois)
    logits = self.classify(regions, text_embeddings)
    if class_valid is not None:
      logits = jnp.where(jnp.concatenate([jnp.array([True]), class_valid]), logits, -jnp.inf)
    sampled, positive = labels >= 0, labels > 0
    count = jnp.maximum(sampled.sum(), 1)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    terms['text'] = jnp.sum(jnp.where(sampled, ce, 0.0)) / count
    matched = jnp.take_along_axis(gt_boxes, gt_index[..., None], 1)
    targets = box_lib.encode(matched, rois, mask_rcnn.ROI_VARIANCES)
    terms['box'] = jnp.sum(mask_rcnn.smooth_l1(box_deltas - targets).sum(-1) * positive) / count
    loss = sum(terms.values())
    if image_boxes is not None:
      terms['image'] = image_distillation_loss(self.image_regions(features, image_boxes),
                                               image_embeddings, image_valid)
      loss = loss + self.image_loss_weight * terms['image']
    terms['loss'] = loss
    return terms


VILD_SCENES = dataclasses.replace(mask_rcnn.MASKRCNN_SCENES, masks=False)
zoo.register('vild_scenes', lambda: ViLD(VILD_SCENES, embed_dim=128),
             inputs=lambda: (jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32),
                             jax.ShapeDtypeStruct((5, 128), jnp.float32)),
             apply_kwargs={'train': False},
             paper='ViLD (Gu et al. 2021, arXiv:2104.13921)', reference_params=None,
             reference_source='project preset for the 64x64 scenes set (5 class-name embeddings)')
