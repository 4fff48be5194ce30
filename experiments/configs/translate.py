"""Image-to-image translation, trained with `experiments/translate.py`.

Presets (CPU-sized networks on the offline sets; the paper-size networks are the zoo's
`pix2pix_unet256`, `patchgan_70`, `cyclegan_resnet_9blocks`, `cyclegan_patchgan_70`):
  pix2pix          Isola et al. 2016: label map -> image on the 64x64 scenes, the U-Net
                   (`pix2pix_unet64`, ngf 16) and the 70x70 PatchGAN (`patchgan_70_small`, ndf 16),
                   cGAN + 100 L1, Adam(2e-4, 0.5)
  pix2pix_l1_only  the same U-Net trained with L1 alone (the paper's Table 1 ablation; no D)
  spade            Park et al. 2019: the SPADE generator (`spade_generator_small`, nf 8, 32 hidden)
                   on the same label maps against the two-scale discriminator
                   (`spade_discriminator_small`, ndf 16), spectral norm in both, hinge loss + 10
                   feature matching + 10 VGG (on the offline loss network `vgg19_bn_mini`, trained
                   on the shapes images on first use, as super_resolution's; ImageNet VGG-19
                   through perceptual.init_from, see experiments/configs/super_resolution.py),
                   Adam(1e-4 G, 4e-4 D, betas 0, 0.999) (appendix A's two time scales)
  cyclegan         Zhu et al. 2017: 32x32 shapes_domains (shapes <-> their negatives, unpaired),
                   the 6-block ResNet generator (ngf 16), the instance-norm PatchGAN (2 layers:
                   34x34 patches for 32x32 images), LSGAN, cycle 10, identity 0.5, pool 50,
                   Adam(2e-4, 0.5)
  tiny / tiny_spade / tiny_cyclegan   a few steps on the tiny sets, for tests
Batch sizes are 8 (the papers use 1 for most sets; 8 makes better use of a CPU's matmuls).
`label_to_image` needs a segmenter trained on the real scenes in `runs/unet_scenes`:
    python -m experiments.segment --config=experiments/configs/segment.py:unet --workdir=runs/unet_scenes
"""

import ml_collections

from experiments.configs import select
from experiments.configs.gan import _adam


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.translate = ml_collections.ConfigDict(dict(
      method='pix2pix',  # pix2pix | spade | cyclegan
      num_labels=6,  # classes of the label maps (scenes: background and five shapes)
      gan_weight=1.0,  # 0: L1 alone, no discriminator (pix2pix's ablation)
      l1_weight=100.0,  # lambda of pix2pix eq. 4
      feature_matching_weight=10.0, vgg_weight=10.0,  # SPADE (vgg_weight 0: no VGG loss)
      cycle_weight=10.0, identity_weight=0.5, pool_size=50,  # CycleGAN
  ))
  c.generator = ml_collections.ConfigDict(dict(name='pix2pix_unet64'))
  c.discriminator = ml_collections.ConfigDict(dict(name='patchgan_70_small'))
  c.data = ml_collections.ConfigDict(dict(
      name='scenes', data_dir='', train_split='train', eval_split='test',
      preprocess='label_to_image', in_memory=True))
  c.optim = ml_collections.ConfigDict(dict(generator=_adam(2e-4, 0.5, 0.999),
                                           discriminator=_adam(2e-4, 0.5, 0.999)))
  c.evals = ml_collections.ConfigDict(dict(
      grid=dict(type='sample_grid', fn='grid', num_images=8, num_rows=3, seed=0, scale=2),
      label_to_image=dict(type='label_to_image', fn='translate_labels',
                          segmenter_workdir='runs/unet_scenes', segmenter_model='unet_scenes',
                          dataset='scenes', split='test'),
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=8, log_every=100, eval_every=1500, checkpoint_every=500,
      max_to_keep=1))
  return c


def pix2pix_l1_only() -> ml_collections.ConfigDict:
  c = base()
  c.translate.gan_weight = 0.0
  return c


def spade() -> ml_collections.ConfigDict:
  c = base()
  c.translate.update(method='spade', l1_weight=0.0)
  # The paper's pieces, named so that they can be switched off: spectral norm in G and D, 2 scales.
  c.generator = ml_collections.ConfigDict(dict(name='spade_generator_small', spectral_norm=True))
  c.discriminator = ml_collections.ConfigDict(dict(name='spade_discriminator_small', num_scales=2,
                                                   spectral_norm=True))
  c.perceptual = ml_collections.ConfigDict(dict(
      model=dict(name='vgg19_bn_mini'), init_from='runs/vgg19_bn_mini_shapes',
      train_preset='vgg19_bn_mini_shapes', pooling='max',
      imagenet_inputs=False))  # True for converted torchvision VGG-19 weights
  c.optim = ml_collections.ConfigDict(dict(generator=_adam(1e-4, 0.0, 0.999),
                                           discriminator=_adam(4e-4, 0.0, 0.999)))
  return c


def cyclegan() -> ml_collections.ConfigDict:
  c = base()
  c.translate.method = 'cyclegan'
  c.generator = ml_collections.ConfigDict(dict(name='cyclegan_resnet_6blocks_small'))
  c.discriminator = ml_collections.ConfigDict(dict(name='cyclegan_patchgan_small'))
  c.data.update(name='shapes_domains', preprocess='unpaired')
  c.evals = ml_collections.ConfigDict(dict(
      grid=dict(type='sample_grid', fn='grid', num_images=8, num_rows=6, seed=0, scale=3),
      domain=dict(type='domain_transfer', fn='translate', dataset='shapes_domains'),
  ))
  return c


def _tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.train.update(steps=2, batch_size=8, log_every=2, eval_every=2, checkpoint_every=2)
  c.evals.grid.num_images = 4
  return c


def tiny() -> ml_collections.ConfigDict:
  c = _tiny(base())
  c.generator.update(features=4)
  c.discriminator.update(features=4)
  c.data.name = 'scenes_tiny'
  c.evals.label_to_image.update(dataset='scenes_tiny', batch_size=16)
  return c


def tiny_spade() -> ml_collections.ConfigDict:
  c = _tiny(spade())
  c.generator.update(features=2, hidden=4)
  c.discriminator.update(features=4)
  c.perceptual.train_preset = ''  # tests save a loss network to perceptual.init_from
  c.data.name = 'scenes_tiny'
  del c.evals['label_to_image']
  return c


def tiny_cyclegan() -> ml_collections.ConfigDict:
  c = _tiny(cyclegan())
  c.generator.update(features=4, num_blocks=1)
  c.discriminator.update(features=4)
  c.data.name = 'shapes_domains_tiny'
  c.evals.domain.update(dataset='shapes_domains_tiny', batch_size=16)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'pix2pix': base, 'pix2pix_l1_only': pix2pix_l1_only, 'spade': spade,
                          'cyclegan': cyclegan, 'tiny': tiny, 'tiny_spade': tiny_spade,
                          'tiny_cyclegan': tiny_cyclegan}, default='pix2pix')
