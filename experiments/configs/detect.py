"""Object detection on the offline `scenes` set (64x64, 5 classes, 1-4 objects) with zoo detectors.

Presets (a few minutes each on 2 CPU cores):
  ssd_scenes              ssd_scenes               SSD (Liu et al. 2016) on a narrow VGG trunk
  detr_scenes             detr_scenes              DETR (Carion et al. 2020), ResNet-18 C3, 20 queries
  deformable_detr_scenes  deformable_detr_scenes   Deformable DETR (Zhu et al. 2020), 3 levels,
                                                   30 queries, focal loss
  maskrcnn_scenes         maskrcnn_scenes          Mask R-CNN (He et al. 2017): ResNet (1, 1, 1) + FPN,
                                                   RPN, box and mask heads; box and mask AP
  retinanet_scenes        retinanet_scenes         RetinaNet (Lin et al. 2017), ResNet + FPN P2-P4
  retinanet_bvr_scenes    retinanet_bvr_scenes     the same with RelationNet++'s BVR (Chi et al. 2020)
  vild_scenes             vild_scenes              ViLD (Gu et al. 2021) trained on the base classes
                                                   (circle, square, triangle) with the CLIP run of
                                                   `vild.clip_workdir` (default runs/clip_shapes_vit,
                                                   `experiments/configs/clip.py:shapes_vit`) as
                                                   teacher; box AP on all, base and novel classes.
                                                   ViLD-image reads `vild.proposals` (default
                                                   runs/vild_proposals), written first by
                                                   `scripts/vild_precompute.py` from a
                                                   `fasterrcnn_base_scenes` run
  fasterrcnn_base_scenes  maskrcnn_scenes          its closed-vocabulary baseline: Faster R-CNN
                                                   (masks=False) with 3 classes on the same base-only
                                                   data (no outputs for diamond and cross), and the
                                                   RPN trained on base classes that proposes
                                                   ViLD-image's regions
  tiny_ssd, tiny_detr, tiny_deformable_detr, tiny_maskrcnn, tiny_retinanet, tiny_retinanet_bvr,
  tiny_vild                                        a few steps of shrunk models on scenes_tiny
                                                   (tiny_vild: `vild.clip_workdir` and
                                                   `vild.proposals` are the test's)
One recipe for all (AdamW 2e-4 with the backbone's rate the same, weight decay 1e-4, gradient
clipping 0.1: DETR's sec. 4 / appendix A.4 optimiser and clipping, at a CPU batch of 32 and a cosine
schedule instead of 500 epochs with a step at 400), so that the table in WORKSPACE.md compares
architectures; SSD's paper recipe (SGD 1e-3) is not used either. `config.evals.box_map` is the COCO
box AP (pycocotools) on the test split (and the mask AP for Mask R-CNN).
"""

import ml_collections

from experiments.configs import select
from jaxpapers.data import scenes


def base(model: str, detector: str, loss: dict | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name=model))
  c.detector = detector
  c.loss = ml_collections.ConfigDict(loss or {})
  c.data = ml_collections.ConfigDict(dict(
      name='scenes', data_dir='', train_split='train', eval_split='test', preprocess='detection',
      in_memory=True))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=2e-4, schedule='cosine', warmup_steps=50, weight_decay=1e-4,
      grad_clip_norm=0.1))
  c.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=32, log_every=50, eval_every=250, checkpoint_every=250,
      max_to_keep=1))
  c.evals = ml_collections.ConfigDict(dict(
      box_map=dict(type='detection', fn='detect', dataset='scenes', split='test')))
  if detector == 'rcnn':  # trains on the instance masks too
    c.data.preprocess = 'instance_detection'
  if detector == 'vild':
    open_vocabulary(c)
    c.model.image_loss_weight = 0.5  # w of L_ViLD-text + w L_ViLD-image (the paper's, on LVIS)
    c.model.ensemble = False  # ViLD-ensemble (sec. 3.4): a separate head for ViLD-image
    c.vild = ml_collections.ConfigDict(dict(
        clip=dict(name='clip_shapes_vit'), clip_workdir='runs/clip_shapes_vit',
        proposals='runs/vild_proposals'))
  return c


def open_vocabulary(c: ml_collections.ConfigDict) -> None:
  """Training on the base classes only; box AP on all classes, on the base and novel ones and on
  each class alone (`<class>_ap`)."""
  c.data.preprocess = 'base_detection'
  c.evals.box_map.subsets = dict(
      base=[scenes.CLASSES.index(name) for name in scenes.BASE_CLASSES],
      novel=scenes.novel_class_ids(), **{name: [i] for i, name in enumerate(scenes.CLASSES)})


def fasterrcnn_base() -> ml_collections.ConfigDict:
  c = base('maskrcnn_scenes', 'rcnn')
  c.model.update(masks=False, num_classes=1 + len(scenes.BASE_CLASSES))
  open_vocabulary(c)
  return c


_FOCAL = dict(classification='focal', w_class=2.0)
_PRESETS = {'ssd_scenes': ('ssd_scenes', 'ssd', None),
            'detr_scenes': ('detr_scenes', 'detr', None),
            'deformable_detr_scenes': ('deformable_detr_scenes', 'detr', _FOCAL),
            'maskrcnn_scenes': ('maskrcnn_scenes', 'rcnn', None),
            'retinanet_scenes': ('retinanet_scenes', 'dense', None),
            'retinanet_bvr_scenes': ('retinanet_bvr_scenes', 'dense', None),
            'vild_scenes': ('vild_scenes', 'vild', None)}
# Shrunk models for tests: overrides of the presets' fields.
_TINY = {'ssd': dict(fc_features=16),
         'detr': dict(d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                      num_decoder_layers=1, num_queries=6, stage_sizes=(1, 1)),
         'deformable_detr': dict(d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                                 num_decoder_layers=1, num_queries=6, stage_sizes=(1, 1, 1),
                                 num_points=2, group_norm_groups=4),
         'maskrcnn': dict(fpn_features=16, rpn_pre_nms_top_n=(64, 32), rpn_post_nms_top_n=(32, 16),
                          roi_batch_size=32, representation_size=32, detection_candidates=32,
                          detections_per_image=10, mask_layers=(8,)),
         'vild': dict(fpn_features=16, rpn_pre_nms_top_n=(64, 32), rpn_post_nms_top_n=(32, 16),
                      roi_batch_size=32, representation_size=32, detection_candidates=32,
                      detections_per_image=10),
         'retinanet': dict(features=16, num_convs=1),
         'retinanet_bvr': dict(features=16, num_convs=1)}


def tiny(kind: str) -> ml_collections.ConfigDict:
  c = base(*_PRESETS[f'{kind}_scenes'])
  c.model.update(_TINY[kind])
  c.data.name = 'scenes_tiny'
  c.evals.box_map.dataset = 'scenes_tiny'
  c.optim.warmup_steps = 2
  c.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4)
  if kind == 'vild':
    c.vild.update(clip=dict(name='clip_shapes_tiny'), clip_workdir='', proposals='')
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  table = {name: (lambda spec=spec: base(*spec)) for name, spec in _PRESETS.items()}
  table['fasterrcnn_base_scenes'] = fasterrcnn_base
  table.update({f'tiny_{kind}': (lambda kind=kind: tiny(kind)) for kind in _TINY})
  return select(preset, table, default='detr_scenes')
