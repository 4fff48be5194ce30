"""x4 super-resolution, trained with `experiments/super_resolution.py`.

Presets:
  srresnet_mse  Ledig et al. 2016's SRResNet (`srresnet_x4`: 16 blocks, 64 channels) on the pixel
                MSE, Adam(1e-4, 0.9), batch 16 (sec. 3.2), on the 32x32 shapes images from their
                8x8 bicubic downsamplings
  srgan         SRGAN-VGG54: the same generator started from an `srresnet_mse` run
                (`sr.generator_init`), the VGG loss on relu5_4 of the offline loss network plus
                1e-3 times the adversarial loss, against `srgan_discriminator` (at 32x32 its dense
                layer sees a 2x2x512 map)
  tiny          a few steps of small networks, for tests

The loss network (`perceptual`) is `vgg19_bn_mini` trained on the shapes by the classify preset
`vgg19_bn_mini_shapes` on first use; with ImageNet VGG-19 converted by scripts/convert.py, set
perceptual.model.name=vgg19, perceptual.init_from=<its directory>, perceptual.train_preset='' and
perceptual.imagenet_inputs=True (its inputs are ImageNet-normalised; the offline network's are not).
The Frechet distances use the fixed `shapes_cnn` classifier (also trained on first use), shared with
the GAN experiments' `runs/shapes_classifier`.
"""

import ml_collections

from experiments.configs import select


def _adam(learning_rate):
  return dict(name='adam', learning_rate=learning_rate, b1=0.9, b2=0.999, schedule='constant',
              warmup_steps=0, grad_clip_norm=0.0)


def _quality(fn, num=1000):
  # num_samples == batch_size: the functions return the first `num` eval images (see the experiment).
  return dict(type='sample_quality', fn=fn, num_samples=num, batch_size=num, seed=0,
              classifier_model='shapes_cnn', classifier_workdir='runs/shapes_classifier',
              dataset='shapes_captions', split='train[:5000]')


def srresnet_mse() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.generator = ml_collections.ConfigDict(dict(name='srresnet_x4'))
  c.discriminator = ml_collections.ConfigDict(dict(name='srgan_discriminator'))
  c.sr = ml_collections.ConfigDict(dict(
      content='mse',  # mse | vgg
      adversarial_weight=0.0,  # 1e-3 for SRGAN (eq. 3); 0: no discriminator
      vgg_layer='relu5_4',  # phi_5,4 (SRGAN-VGG54); relu2_2 is the paper's VGG22
      vgg_scale=1.0 / 12.75,  # sec. 3.2
      generator_init='',  # workdir of a trained srresnet_mse run (SRGAN's initialisation)
      eval_crop=4,  # border removed before PSNR / SSIM (the scale factor)
  ))
  c.perceptual = ml_collections.ConfigDict(dict(
      model=dict(name='vgg19_bn_mini'), init_from='runs/vgg19_bn_mini_shapes',
      train_preset='vgg19_bn_mini_shapes', pooling='max',
      imagenet_inputs=False))  # True for converted torchvision VGG-19 weights
  c.data = ml_collections.ConfigDict(dict(
      name='shapes_captions', data_dir='', train_split='train', eval_split='validation',
      preprocess='super_resolution_x4', in_memory=True))
  c.optim = ml_collections.ConfigDict(dict(generator=_adam(1e-4), discriminator=_adam(1e-4)))
  c.evals = ml_collections.ConfigDict(dict(
      grid=dict(type='sample_grid', fn='sr_grid', num_images=32, num_rows=8, seed=0, scale=3),
      quality=_quality('super_resolve'),
      quality_bicubic=_quality('bicubic'),
      quality_high_res=_quality('high_res'),
  ))
  c.train = ml_collections.ConfigDict(dict(
      steps=1000, batch_size=16, log_every=100, eval_every=1000, checkpoint_every=500,
      max_to_keep=2))
  return c


def srgan() -> ml_collections.ConfigDict:
  c = srresnet_mse()
  c.sr.update(content='vgg', adversarial_weight=1e-3, generator_init='runs/srresnet_mse')
  c.train.update(steps=300, eval_every=300)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = srgan()
  c.generator = ml_collections.ConfigDict(dict(name='srresnet_x4_tiny'))
  c.discriminator = ml_collections.ConfigDict(dict(name='srgan_discriminator_tiny'))
  c.sr.update(generator_init='', vgg_layer='relu2_1')
  c.data.update(name='shapes_captions_tiny')
  c.evals = ml_collections.ConfigDict(dict(
      grid=dict(type='sample_grid', fn='sr_grid', num_images=8, num_rows=2, seed=0, scale=1)))
  c.train.update(steps=2, batch_size=8, log_every=1, eval_every=2, checkpoint_every=2)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'srresnet_mse': srresnet_mse, 'srgan': srgan, 'tiny': tiny},
                default='srresnet_mse')
