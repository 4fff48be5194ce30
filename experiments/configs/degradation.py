"""The degradation problem: plain vs residual CIFAR networks of depth 20 and 56, training error.

"Deep Residual Learning for Image Recognition", He, Zhang, Ren, Sun 2015, arXiv:1512.03385,
Figures 1 and 6 (sec. 4.2).

Presets:
  distorted_digits  the four networks on the offline digits set with random affine distortions and
                    pixel noise (see experiments/degradation.py for why), the paper's optimiser
  tiny              a few steps of ResNet-20 in batches of 16, for tests

Settings, and where they come from:
  - Networks: `plain20`, `plain56`, `resnet20`, `resnet56` of the zoo, exactly the paper's CIFAR
    networks (sec. 4.2: 16/32/64 filters, option-A shortcuts); on 8x8 digits the maps go 8, 4, 2.
  - Optimiser, as sec. 4.2: SGD with momentum 0.9, weight decay 1e-4 (on kernels only, see
    jaxpapers/train/optim.py), learning rate 0.1, mini-batches of 128, no warm-up (the paper warms
    up only ResNet-110). The paper trains 64k iterations, dividing the rate by 10 at 32k and 48k;
    a CPU budget covers only a few hundred iterations, all inside the paper's first, constant-rate
    phase, so the rate here is constant.
  - Every network gets the same seed, so the same batches and the same distortions.
"""

import ml_collections

from experiments.configs import classify
from experiments.configs import select


def distorted_digits() -> ml_collections.ConfigDict:
  c = classify.base()  # Each network runs as an experiments.classify config with `model` set.
  c.models = 'plain20,plain56,resnet20,resnet56'  # comma-separated zoo names, the figure's curves
  c.data.augment.random_crop_padding = 0  # The distortion below translates already.
  c.distortion = ml_collections.ConfigDict(dict(
      rotation_degrees=20.0,  # uniform in [-r, r]
      scale=0.15,  # isotropic zoom, uniform in [1 - s, 1 + s]
      shear=0.2,  # horizontal shear factor, uniform in [-s, s]
      translation=1.0,  # pixels, uniform in [-t, t] on each axis
      noise_std=0.15,  # additive Gaussian pixel noise (images are in [0, 1])
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name='momentum', learning_rate=0.1, momentum=0.9, nesterov=False, schedule='constant',
      warmup_steps=0, weight_decay=1e-4, grad_clip_norm=0.0))
  c.train.update(steps=400, batch_size=128, log_every=10, eval_every=100, checkpoint_every=400)
  c.smoothing = 5  # moving average over this many logged points (log_every steps each) in the plot
  return c


def tiny() -> ml_collections.ConfigDict:
  c = distorted_digits()
  c.models = 'resnet20'
  c.train.update(steps=4, batch_size=16, log_every=1, eval_every=4, checkpoint_every=4)
  c.smoothing = 2
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'distorted_digits': distorted_digits, 'tiny': tiny},
                 default='distorted_digits')
