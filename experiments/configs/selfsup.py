"""Self-supervised pre-training (SimCLR, MoCo, BYOL, SimSiam, SwAV, Barlow Twins) and a supervised
baseline of the same encoder, on the offline captioned shapes (32x32 RGB), probed on frozen features.

Presets (`<method>_shapes`, the CPU runs of WORKSPACE.md; `tiny`, `<method>_tiny` for tests):
  simclr_shapes, moco_shapes, byol_shapes, simsiam_shapes, swav_shapes, barlow_twins_shapes,
  supervised_shapes (the encoder and a linear classifier trained on the shape labels)

Why the shapes and not the 8x8 digits: the view augmentations are the method. At 8x8 a random
resized crop of 8% of the area is 2x2 pixels, a blur kernel of 10% of the side is under one pixel
and the images are grey, so colour jitter and grey-scale do nothing; the 32x32 colour shapes keep
every augmentation meaningful (and their labels, shape and colour, show what each augmentation
teaches the encoder to ignore: colour jitter and grey-scale make colour a nuisance).

Common settings and departures (each paper's recipe is in its module's docstring):
  - Encoder `ssl_convnet` (3 conv-BN-ReLU-pool stages, 16/32/64 channels, 64-d pooled features
    h; 23,696 parameters) instead of a ResNet-50; heads 256 wide instead of 2048-8192.
  - Views: SimCLR's recipe at 32x32: crop scale 0.2-1 (0.08 would often crop the shape out: the
    small shapes cover 4% of the image), flips, colour jitter strength 1.0 (SimCLR's ImageNet
    value; 0.5, its CIFAR-10 one, left colour the dominant feature in a first run), grey-scale
    0.2, blur with a 3-tap kernel (10% of 32) and sigma 0.1-1.0 pixels, p 0.5 (BYOL: 1.0, 0.1).
    MoCo v1's recipe has no blur; here every method uses the same views so that the table
    compares objectives. No solarisation (BYOL's second view).
  - AdamW (lr 2e-3, cosine, warm-up 30 steps, weight decay 1e-5 on kernels) for every method
    instead of LARS (SimCLR, BYOL, SwAV, Barlow Twins) or SGD (MoCo, SimSiam); batch 128 instead
    of 256-4096 (SimCLR: 254 negatives per pair); 400 steps (1.7 epochs of the 30,000 training
    images, a few minutes on a 2-core CPU) instead of 100-1000 epochs of ImageNet.
  - MoCo: momentum 0.99 (paper 0.999: over 400 steps 0.999 would leave the key encoder 67% at its
    initialisation; the paper's ablation gives 0.99 only 1.2 points less); queue 4,096 (paper
    65,536; here 32 batches); temperature 0.07; 128-d linear fc.
  - SimCLR temperature 0.5 (appendix B.9, CIFAR-10); BYOL tau_base 0.996; SimSiam predictor
    bottleneck 64 (d/4 as 512/2048); SwAV 32 prototypes (paper 3,000 for ImageNet's 1,000
    classes), epsilon 0.05, 3 Sinkhorn iterations, temperature 0.1, 2 x 32px + 4 x 16px crops
    (scales 0.2-1 and 0.05-0.2), prototypes frozen for the first 100 steps; Barlow Twins a
    512-512-512 projector with the paper's lambda 5e-3 (tuned there for 8192-d).
"""

import ml_collections

from experiments.configs import select

METHODS = ('simclr', 'moco', 'byol', 'simsiam', 'swav', 'barlow_twins', 'supervised')


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = 'simclr'
  c.model = ml_collections.ConfigDict(dict(name='ssl_convnet'))  # the encoder, from the zoo
  c.data = ml_collections.ConfigDict(dict(
      name='shapes_captions', data_dir='',
      label='shape',  # the label of the supervised baseline
  ))
  c.views = ml_collections.ConfigDict(dict(
      crop_scale=(0.2, 1.0), flip=True, jitter_strength=1.0, jitter_prob=0.8, grayscale_prob=0.2,
      blur_prob=(0.5, 0.5), blur_sigma=(0.1, 1.0)))  # blur_prob per view
  c.projector = ml_collections.ConfigDict(dict(hidden=(256,), features=128, output_norm=False))
  c.predictor = ml_collections.ConfigDict(dict(hidden=(256,), features=128, output_norm=False))
  c.simclr = ml_collections.ConfigDict(dict(temperature=0.5))
  c.moco = ml_collections.ConfigDict(dict(temperature=0.07, momentum=0.99, queue_size=4096))
  c.byol = ml_collections.ConfigDict(dict(tau_base=0.996))
  c.swav = ml_collections.ConfigDict(dict(
      num_prototypes=32, epsilon=0.05, iterations=3, temperature=0.1, freeze_prototypes_steps=100,
      multicrop=dict(small_crops=4, small_size=16, large_scale=(0.2, 1.0), small_scale=(0.05, 0.2))))
  c.barlow_twins = ml_collections.ConfigDict(dict(lambd=5e-3))
  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=2e-3, schedule='cosine', warmup_steps=30, weight_decay=1e-5,
      grad_clip_norm=0.0))
  c.train = ml_collections.ConfigDict(dict(
      steps=400, batch_size=128, log_every=50, eval_every=0, checkpoint_every=200, max_to_keep=1))
  data = dict(dataset=c.data.get_ref('name'), data_dir=c.data.get_ref('data_dir'))
  # Fitted on 5,000 training images, scored on the validation split. The test split's held-out
  # colour-shape pairs are left out: colour is a strong cue in these features, so a red circle
  # (never seen in training) has red squares and red triangles as neighbours, and its shape score
  # measures compositional generalisation, not the representation of shape.
  frozen = dict(train_split='train', train_size=5000, eval_splits=dict(val='validation'),
                targets=('shape', 'colour'), **data)
  c.evals = ml_collections.ConfigDict(dict(
      probe=dict(type='linear_probe', fn='features', **frozen),
      knn=dict(type='knn', fn='features', k=200, temperature=0.07, **frozen),
      random_probe=dict(type='linear_probe', fn='features_at_init', cache_features=True, **frozen),
      random_knn=dict(type='knn', fn='features_at_init', cache_features=True, k=200,
                      temperature=0.07, **frozen),
  ))
  return c


def method(name: str) -> ml_collections.ConfigDict:
  c = base()
  c.method = name
  if name == 'moco':
    c.projector.update(hidden=(), features=128)  # v1: a linear fc to 128-d
  elif name == 'byol':
    c.views.blur_prob = (1.0, 0.1)  # Table 6: asymmetric blur
  elif name == 'simsiam':
    # Projector with BN on every layer, the output's included; bottleneck predictor (section 4.1).
    c.projector.update(hidden=(256, 256), features=256, output_norm=True)
    c.predictor.update(hidden=(64,), features=256)
  elif name == 'barlow_twins':
    c.projector.update(hidden=(512, 512), features=512)
  elif name == 'supervised':
    # The usual supervised augmentation: crops and flips only.
    c.views.update(jitter_strength=0.0, grayscale_prob=0.0, blur_prob=(0.0, 0.0))
  return c


def tiny(name: str = 'moco') -> ml_collections.ConfigDict:
  c = method(name)
  c.model.name = 'ssl_convnet_tiny'
  c.data.name = 'shapes_captions_tiny'
  c.projector.update(hidden=tuple(16 for _ in c.projector.hidden), features=16)
  c.predictor.update(hidden=(8,), features=16)
  c.moco.queue_size = 64
  c.swav.update(num_prototypes=8, freeze_prototypes_steps=2)
  c.swav.multicrop.small_crops = 2
  for entry in c.evals.values():
    entry.train_size = 128
    if entry.type == 'knn':
      entry.k = 20
  c.optim.warmup_steps = 2
  c.train.update(steps=6, batch_size=32, log_every=3, checkpoint_every=6)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  table = {'tiny': tiny}
  for name in METHODS:
    table[f'{name}_shapes'] = lambda name=name: method(name)
    table[f'{name}_tiny'] = lambda name=name: tiny(name)
  return select(preset, table, default='simclr_shapes')
