"""Supervised image classification with any zoo classifier.

Presets:
  digits_cnn  the demo: LeNet-style convnet on the offline digits set (>= 95% test accuracy in ~1 min on CPU)
  digits_mlp  a one-hidden-layer MLP on the same data
  digits_vit  a 4-layer ViT (2x2 patches) on the same data
  shapes_cnn  the same convnet on the 32x32 shapes_captions images, predicting their `shape`
  vgg19_bn_mini_shapes
              VGG-19's layout at a quarter width (`vgg19_bn_mini`) on the same task: the offline
              loss network of the perceptual losses (experiments/style_transfer.py,
              super_resolution.py), standing in for ImageNet VGG-19
  tiny        a few steps of the MLP, for tests
  cifar10_resnet20, cifar10_resnet56, cifar10_wrn_28_10
              the papers' CIFAR-10 recipes (TFDS `cifar10`, prepared in array_record), for a
              GPU/TPU; see `cifar10` for what is followed and what is not
"""

import ml_collections

from experiments.configs import select


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Any zoo classifier taking (images, train=...) -> logits, with overrides of its fields.
  c.model = ml_collections.ConfigDict(dict(name='digits_cnn'))
  # Start a fresh run from saved variables (scripts/convert.py's output); paths matching the
  # exclude regex, e.g. '^params/fc/' for a head with another class count, start fresh.
  c.init_from = ''
  c.init_from_exclude = ''
  c.data = ml_collections.ConfigDict(dict(
      name='sklearn_digits', data_dir='', train_split='train', eval_split='test',
      preprocess='image_classification',
      in_memory=True,  # decode the whole dataset once (for small datasets)
      augment=dict(  # on the device, in the train step
          random_crop_padding=1,  # random crop of the zero-padded image: shifts by up to this (0 = off)
          random_flip=False,  # horizontal flips (not for digits: a mirrored 2 is no digit)
      ),
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=3e-3, schedule='cosine', warmup_steps=50, weight_decay=1e-4,
      grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=1500, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500, max_to_keep=2))
  return c


def digits_mlp() -> ml_collections.ConfigDict:
  c = base()
  c.model.name = 'digits_mlp'
  c.data.augment.random_crop_padding = 0
  return c


def digits_vit() -> ml_collections.ConfigDict:
  """ViT (Dosovitskiy et al. 2020) from scratch on 1,437 images: no pre-training, so it leans on
  augmentation and a longer run; AdamW with a linear warm-up and cosine decay as the paper."""
  c = base()
  c.model.name = 'digits_vit'
  c.optim.update(learning_rate=1e-3, warmup_steps=200, weight_decay=0.05)
  c.train.steps = 3000
  return c


def shapes_cnn() -> ml_collections.ConfigDict:
  """The shape (circle, square, triangle, diamond, cross) of the 32x32 shapes_captions images: the
  fixed classifier scoring generated shapes (`sample_quality` with classifier_model='shapes_cnn')."""
  c = base()
  c.model.name = 'shapes_cnn'
  c.data.update(name='shapes_captions', eval_split='validation', label_feature='shape')
  c.data.augment.random_crop_padding = 0
  c.train.update(steps=1000, batch_size=64)
  return c


def vgg19_bn_mini_shapes() -> ml_collections.ConfigDict:
  """The loss network of the offline style-transfer and super-resolution runs (no ImageNet VGG-19
  can be downloaded here): 16 3x3 convolutions learn colour, edge and shape features."""
  c = shapes_cnn()
  c.model.name = 'vgg19_bn_mini'
  c.data.augment.random_flip = True
  c.train.update(steps=300, batch_size=32, log_every=50, eval_every=300, checkpoint_every=300)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = digits_mlp()
  c.optim.warmup_steps = 2
  c.train.update(steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
  return c


def cifar10(model: str) -> ml_collections.ConfigDict:
  """CIFAR-10 with the recipe of "Deep Residual Learning for Image Recognition" (He et al. 2015,
  arXiv:1512.03385, sec. 4.2): SGD, momentum 0.9, weight decay 1e-4, learning rate 0.1, batch 128,
  64k iterations on the 50k training images, random 32x32 crops of the 4-pixel zero-padded image
  and horizontal flips, the rate divided by 10 at 32k and 48k iterations. Departures: the paper
  holds out 5k images for validation, here the test split is the eval split; images are scaled to
  [0, 1] without the paper's per-pixel mean subtraction (the first convolution is followed by BN).
  """
  c = base()
  c.model.name = model
  c.data.update(name='cifar10', train_split='train', eval_split='test',
                in_memory=False)  # decoded by the pipeline's workers, not held in host memory
  c.data.augment.update(random_crop_padding=4, random_flip=True)
  c.optim = ml_collections.ConfigDict(dict(
      name='momentum', learning_rate=0.1, momentum=0.9, nesterov=False, schedule='step',
      decay_boundaries=(32_000, 48_000), decay_factor=0.1, warmup_steps=0, weight_decay=1e-4,
      grad_clip_norm=0.0))
  c.train.update(steps=64_000, batch_size=128, log_every=100, eval_every=2_000,
                 checkpoint_every=2_000,
                 cpu_kernels='onednn_ynnpack')  # on CPU, ResNet-20's fastest (WORKSPACE.md)
  return c


def cifar10_wrn_28_10() -> ml_collections.ConfigDict:
  """WRN-28-10 with dropout 0.3, as "Wide Residual Networks" (Zagoruyko & Komodakis 2016,
  arXiv:1605.07146, sec. 3): SGD with Nesterov momentum 0.9, weight decay 5e-4, learning rate 0.1,
  batch 128, 200 epochs (78,125 iterations), random crops of the 4-pixel padded image and flips,
  the rate multiplied by 0.2 at epochs 60, 120 and 160. Departures: the paper pads by reflection
  (here zeros) and normalises the images by mean and std.
  """
  c = cifar10('wrn_28_10')
  epoch = 50_000 / 128  # iterations
  c.optim.update(nesterov=True, weight_decay=5e-4, decay_factor=0.2,
                 decay_boundaries=tuple(round(e * epoch) for e in (60, 120, 160)))
  c.train.steps = round(200 * epoch)  # 78,125
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'digits_cnn': base, 'digits_mlp': digits_mlp, 'digits_vit': digits_vit,
                          'shapes_cnn': shapes_cnn, 'vgg19_bn_mini_shapes': vgg19_bn_mini_shapes,
                          'tiny': tiny,
                          'cifar10_resnet20': lambda: cifar10('resnet20'),
                          'cifar10_resnet56': lambda: cifar10('resnet56'),
                          'cifar10_wrn_28_10': cifar10_wrn_28_10},
                 default='digits_cnn')
