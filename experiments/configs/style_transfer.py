"""Neural style transfer, run with `experiments/style_transfer.py`.

Presets:
  gatys    Gatys et al. 2015/2016: the content photograph ('china', 128 rows) optimised by L-BFGS
           (the 2016 paper's optimiser), starting from the photograph, for alpha L_content +
           beta L_style over relu1_1 ... relu5_1 (w_l = 1/5) and relu4_2, with average pooling
  gatys_adam  the same objective with Adam (learning rate 0.02): the common alternative
  johnson  Johnson et al. 2016: the transformation network (`johnson_transform`, 1.68 M
           parameters, the paper's transposed convolutions; `network.upsampling=nearest` gives
           resize-convolutions, not yet measured) trained with Adam(1e-3), batch 4, 600 steps, on
           64x64 crops of the other photograph ('flower') and tested on 'china'
  tiny_gatys, tiny_johnson  a few steps at a small size, for tests

Weights: the paper's alpha / beta = 1e-3 (for ImageNet VGG-19 features) is kept as the default of
`gatys_content_weight` / `gatys_style_weight`; the offline loss network's features have other
scales, so the presets set the ratio that balances the two losses on it (see WORKSPACE.md). The
loss network (`perceptual`) is trained on first use; see experiments/configs/super_resolution.py
for ImageNet VGG-19.
"""

import ml_collections

from experiments.configs import select


def gatys() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.style = ml_collections.ConfigDict(dict(
      method='gatys',  # gatys | johnson
      content='china', height=128, style_seed=0,
      init='content',  # content | noise (Gatys et al.'s 2016 paper starts from white noise)
      # alpha, beta (eq. 7): the paper's alpha / beta = 1e-3; on the offline loss network it also
      # balances the two terms (the photograph's style loss 0.27, the style image's content loss 443)
      gatys_content_weight=1e-3, gatys_style_weight=1.0,
      # Johnson's weights: feature loss 1, style 1 (fast-neural-style's 5 is for its Gram MSE, a
      # mean over C^2 entries; here the paper's squared Frobenius norm), TV 1e-5 (images in [0, 1])
      johnson_content_weight=1.0, johnson_style_weight=1.0, tv_weight=1e-5,
      train_photograph='flower', num_crops=512, crop_size=64,  # Johnson's content images
  ))
  c.network = ml_collections.ConfigDict(dict(name='johnson_transform', upsampling='transposed'))
  c.perceptual = ml_collections.ConfigDict(dict(
      model=dict(name='vgg19_bn_mini'), init_from='runs/vgg19_bn_mini_shapes',
      train_preset='vgg19_bn_mini_shapes', pooling='avg',
      imagenet_inputs=False))  # True for converted torchvision VGG-19 weights
  c.data = ml_collections.ConfigDict(dict(data_dir=''))  # where the loss network's shapes are
  c.optim = ml_collections.ConfigDict(dict(name='lbfgs', memory_size=10, learning_rate=1.0,
                                           schedule='constant', warmup_steps=0))
  c.evals = ml_collections.ConfigDict(dict(
      stylised=dict(type='sample_grid', fn='stylised', num_images=3, num_rows=1, seed=0, scale=2),
      curves=dict(type='training_curves', metrics=('content_loss', 'style_loss', 'loss'),
                  log_scale=('content_loss', 'style_loss', 'loss'))))
  c.train = ml_collections.ConfigDict(dict(
      steps=100, batch_size=1, log_every=10, eval_every=100, checkpoint_every=100, max_to_keep=1))
  return c


def gatys_adam() -> ml_collections.ConfigDict:
  c = gatys()
  c.optim = ml_collections.ConfigDict(dict(name='adam', learning_rate=0.02, schedule='constant',
                                           warmup_steps=0))
  c.train.update(steps=300, log_every=25, eval_every=300, checkpoint_every=300)
  return c


def johnson() -> ml_collections.ConfigDict:
  c = gatys()
  c.style.method = 'johnson'
  c.optim = ml_collections.ConfigDict(dict(name='adam', learning_rate=1e-3, schedule='constant',
                                           warmup_steps=0))
  c.train.update(steps=600, batch_size=4, log_every=50, eval_every=300, checkpoint_every=300)
  return c


def _tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.style.update(height=32, num_crops=16, crop_size=16)
  c.perceptual.train_preset = ''  # tests save a loss network to perceptual.init_from
  c.network.name = 'johnson_transform_tiny'
  del c.evals['curves']
  c.train.update(steps=2, batch_size=8, log_every=1, eval_every=2, checkpoint_every=2)
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  return select(preset, {'gatys': gatys, 'gatys_adam': gatys_adam, 'johnson': johnson,
                          'tiny_gatys': lambda: _tiny(gatys()),
                          'tiny_johnson': lambda: _tiny(johnson())},
                 default='gatys')
