"""VGG: "Very Deep Convolutional Networks for Large-Scale Image Recognition" (Simonyan & Zisserman
2014, arXiv:1409.1556), configurations A, B, D, E of Table 1 (VGG-11, 13, 16, 19), as torchvision.

Sec. 2.1-2.2: stacks of 3x3 stride-1 convolutions with padding 1 and ReLU, 2x2 stride-2 max pooling
between the five stacks, then FC-4096, FC-4096 (ReLU, dropout 0.5 on both, sec. 3.1) and the
1000-way classifier. The `_bn` variants (torchvision's) put batch normalisation (Ioffe & Szegedy
2015, arXiv:1502.03167) after every convolution, keeping the convolution biases; these did not
exist in the paper. Not implemented: configuration A-LRN and configuration C (1x1 convolutions).

Departures, as torchvision: an adaptive 7x7 average pool before the classifier (an identity on
224x224 inputs, sec. 3.2's "fully-convolutional" testing is not reproduced), and torchvision's
initialisation (He normal, fan-out, for convolutions; N(0, 0.01^2) for the fully connected layers;
zero biases) instead of the paper's N(0, 10^-2) (variance) everywhere plus pre-training of the
deeper nets from configuration A (sec. 3.1), which the paper notes was unnecessary with Glorot
initialisation.

Parameter counts, equal to torchvision's (Table 2 rounds them to 133, 133, 138, 144 M):
  convolutions sum of 9 c_in c_out + c_out, classifier 25088*4096 + 4096*4096 + 4096*1000
  (+ biases) = 123,642,856; `_bn` adds 2 per convolution channel.
  vgg11 132,863,336   vgg13 133,047,848   vgg16 138,357,544   vgg19 143,667,240
  vgg11_bn 132,868,840   vgg13_bn 133,053,736   vgg16_bn 138,365,992   vgg19_bn 143,678,248
Modules are named as torchvision's state dict (`features_{i}`, `classifier_{i}`).

Intermediate activations, for the perceptual losses of `jaxpapers/style/`: every ReLU output is
sown into the 'intermediates' collection under the name the style-transfer papers use,
`relu{block}_{conv}` (relu1_1 ... relu5_4 in VGG-19), and `__call__(x, head=False)` stops after the
last pooling of `features`, so the classifier is not computed (its parameters stay in the
variables, so converted torchvision weights load unchanged). `pooling='avg'` replaces the max
pools by average pools (Gatys et al. 2016, sec. 2, for image synthesis). `width_divisor`,
`hidden` and `pool_size` shrink the network for the offline feature network `vgg19_bn_mini`
(configuration E's layout and layer names at a quarter of the widths, a 256-unit classifier on a
1x1 pool), which has no reference count: it is the project's, not the paper's.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxpapers import zoo
from jaxpapers.convnets import layers

# Table 1: filters of each 3x3 convolution, 'M' for a max pool.
CONFIGS = {
    'A': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'B': (64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'D': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'),
    'E': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512,
          512, 512, 'M'),
}


class VGG(nn.Module):
  config: str = 'D'
  batch_norm: bool = False
  num_classes: int = 1000
  dropout_rate: float = 0.5
  pooling: str = 'max'  # 'avg': Gatys et al.'s average pooling for synthesis
  width_divisor: int = 1  # convolution widths are Table 1's divided by this
  hidden: int = 4096  # width of the two hidden classifier layers
  pool_size: int = 7  # side of the adaptive average pool before the classifier

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, head: bool = True) -> jax.Array:
    index = 0  # Position in torchvision's `features` Sequential (conv, [bn,] relu, or pool).
    block, conv = 1, 1
    for v in CONFIGS[self.config]:
      if v == 'M':
        x = layers.pool(x, self.pooling, 2, 2)
        index += 1
        block, conv = block + 1, 1
        continue
      x = nn.Conv(v // self.width_divisor, (3, 3), padding=((1, 1), (1, 1)),
                  kernel_init=layers.he_normal(), name=f'features_{index}')(x)
      if self.batch_norm:
        x = layers.batch_norm(train, f'features_{index + 1}')(x)
      x = nn.relu(x)
      self.sow('intermediates', f'relu{block}_{conv}', x)
      index += 3 if self.batch_norm else 2
      conv += 1
    if not head:
      return x
    x = layers.adaptive_avg_pool(x, (self.pool_size, self.pool_size))
    x = x.reshape(x.shape[0], -1)
    dense_init = nn.initializers.normal(0.01)
    for index in (0, 3):
      x = nn.relu(nn.Dense(self.hidden, kernel_init=dense_init, name=f'classifier_{index}')(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=dense_init, name='classifier_6')(x)


_PAPER = ('Very Deep Convolutional Networks for Large-Scale Image Recognition '
          '(Simonyan & Zisserman 2014, arXiv:1409.1556)')
_COUNTS = {'vgg11': ('A', 132_863_336, 132_868_840), 'vgg13': ('B', 133_047_848, 133_053_736),
           'vgg16': ('D', 138_357_544, 138_365_992), 'vgg19': ('E', 143_667_240, 143_678_248)}
for _name, (_config, _plain, _with_bn) in _COUNTS.items():
  for _bn, _count in ((False, _plain), (True, _with_bn)):
    _preset = _name + ('_bn' if _bn else '')
    zoo.register(_preset, lambda config=_config, bn=_bn: VGG(config=config, batch_norm=bn),
                 inputs=zoo.image_input(224, 224, 3), apply_kwargs={'train': False}, paper=_PAPER,
                 reference_params=_count, reference_source=f'torchvision {_preset}')
zoo.register('vgg19_bn_mini', lambda: VGG(config='E', batch_norm=True, width_divisor=4, hidden=256,
                                           pool_size=1, num_classes=5),
             inputs=zoo.image_input(32, 32, 3), apply_kwargs={'train': False},
             paper=_PAPER + ', configuration E at a quarter of the widths (the project\'s)',
             reference_params=None, reference_source='none: the offline perceptual-loss network')
