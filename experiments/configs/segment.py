"""Semantic segmentation of the offline `scenes` set with any zoo segmenter.

Presets (64x64 scenes, 6 classes: background and five shapes; a few minutes each on 2 CPU cores):
  unet         unet_scenes             U-Net (Ronneberger et al. 2015), 'SAME' padding
  fcn8s        fcn8s_scenes            FCN-8s (Long et al. 2015) on a narrow VGG trunk
  segnet       segnet_scenes           SegNet (Badrinarayanan et al. 2015), pooling-index unpooling
  fc_densenet  fc_densenet_scenes      FC-DenseNet (Jegou et al. 2016), 3 blocks, growth 8
  fpn          fpn_resnet18_scenes     ResNet-18 + FPN (Lin et al. 2016) + a Panoptic-FPN head
  tiny         a few steps of a shrunk U-Net on scenes_tiny, for tests
All share one recipe (AdamW, cosine decay, batch 32, per-pixel cross-entropy) so that the table in
WORKSPACE.md compares architectures, not training schedules; none is the paper's own recipe (SGD
with momentum for hundreds of epochs on VOC/CamVid/ISBI, out of reach here).
"""

import ml_collections

from experiments.configs import select


def base(model: str = 'unet_scenes') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name=model))
  c.data = ml_collections.ConfigDict(dict(
      name='scenes', data_dir='', train_split='train', eval_split='test', preprocess='segmentation',
      in_memory=True))
  c.aux_loss_weight = 0.5  # torchvision's reference recipe for heads with an auxiliary output
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=2e-3, schedule='cosine', warmup_steps=50, weight_decay=1e-4,
      grad_clip_norm=1.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=32, log_every=100, eval_every=1500, checkpoint_every=500,
      max_to_keep=1))
  c.evals = ml_collections.ConfigDict(dict(
      miou=dict(type='segmentation', fn='segment', dataset='scenes', split='test')))
  return c


def tiny() -> ml_collections.ConfigDict:
  c = base()
  c.model.update(features=4, depth=2)
  c.data.name = 'scenes_tiny'
  c.evals.miou.dataset = 'scenes_tiny'
  c.optim.warmup_steps = 2
  c.train.update(steps=6, batch_size=8, log_every=3, eval_every=6, checkpoint_every=6)
  return c


_MODELS = {'unet': 'unet_scenes', 'fcn8s': 'fcn8s_scenes', 'segnet': 'segnet_scenes',
           'fc_densenet': 'fc_densenet_scenes', 'fpn': 'fpn_resnet18_scenes'}


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  table = {name: (lambda model=model: base(model)) for name, model in _MODELS.items()}
  return select(preset, {**table, 'tiny': tiny}, default='unet')
