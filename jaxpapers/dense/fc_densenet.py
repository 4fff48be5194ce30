"""FC-DenseNet: "The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for Semantic
Segmentation" (Jegou, Drozdzal, Vazquez, Romero, Bengio 2016, arXiv:1611.09326).

Sec. 3 and Tables 1-2: a 3x3 convolution with 48 channels; a down path of dense blocks (each layer
BN, ReLU, 3x3 convolution with `growth` channels, dropout 0.2, its output concatenated to the
block's input: DenseNet's connectivity, eq. 2) each followed by a transition down (BN, ReLU, 1x1
convolution keeping the channels, dropout 0.2, 2x2 max pool); a bottleneck dense block; an up path
where each transition up is a 3x3 transposed convolution of stride 2 applied only to the feature
maps the previous dense block *created* (not to its input: "to avoid feature explosion", sec. 3.2),
with as many channels, concatenated with the skip connection of the same resolution and followed by
a dense block; then a 1x1 convolution to the classes. Table 2's models, growth k and layers per
block (down path, bottleneck, up path), with 11 classes (CamVid):
  FC-DenseNet56   k=12, 4 layers per block                        1,376,795 trainable parameters
  FC-DenseNet67   k=16, 5 layers per block                        3,463,243
  FC-DenseNet103  k=16, 4, 5, 7, 10, 12 | 15 | 12, 10, 7, 5, 4   9,322,091
(convolutions with biases, BN scale and shift, as the authors' Lasagne code, SimJeg/FC-DenseNet).
Table 2 gives 1.5M, 3.5M and 9.4M: adding the BN running means and variances, which Lasagne's
`count_params` counts as parameters, gives 1.40M, 3.50M and 9.43M, so the last two agree; the
first does not, for a reason not found here.

Departures: the transposed convolution produces exactly twice its input's size ('SAME'-like
padding), where the authors' code crops it to the skip's size; He initialisation (the authors use
HeUniform); inputs need sides divisible by 2^(number of blocks).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets import layers as conv_layers
from jaxpapers.dense import layers


class DenseLayer(nn.Module):
  """BN, ReLU, conv (3x3 or 1x1), dropout: the composite function H of sec. 3.1."""
  features: int
  kernel: int = 3
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(conv_layers.batch_norm(train, 'bn')(x))
    x = nn.Conv(self.features, (self.kernel, self.kernel), padding=self.kernel // 2,
                kernel_init=conv_layers.he_normal('fan_in'), name='conv')(x)
    return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


class DenseBlock(nn.Module):
  """Returns (input and new maps concatenated, the new maps alone)."""
  num_layers: int
  growth: int
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    new = []
    for i in range(self.num_layers):
      y = DenseLayer(self.growth, dropout_rate=self.dropout_rate, name=f'layer{i}')(x, train)
      new.append(y)
      x = jnp.concatenate([x, y], axis=-1)
    return x, jnp.concatenate(new, axis=-1)


class FCDenseNet(nn.Module):
  num_classes: int = 11
  down_layers: Sequence[int] = (4, 5, 7, 10, 12)
  bottleneck_layers: int = 15
  growth: int = 16
  first_features: int = 48
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    x = nn.Conv(self.first_features, (3, 3), padding=1,
                kernel_init=conv_layers.he_normal('fan_in'), name='first_conv')(x)
    skips = []
    for b, n in enumerate(self.down_layers):
      x, _ = DenseBlock(n, self.growth, self.dropout_rate, name=f'down{b}')(x, train)
      skips.append(x)
      x = DenseLayer(x.shape[-1], 1, self.dropout_rate, name=f'transition_down{b}')(x, train)
      x = nn.max_pool(x, (2, 2), (2, 2))
    _, new = DenseBlock(self.bottleneck_layers, self.growth, self.dropout_rate,
                        name='bottleneck')(x, train)
    up_layers = tuple(reversed(self.down_layers))
    for b, n in enumerate(up_layers):
      up = layers.upsample(new.shape[-1], 3, 2, f'transition_up{b}',
                           kernel_init=conv_layers.he_normal('fan_in'))(new)
      x = jnp.concatenate([up, skips[-1 - b]], axis=-1)
      x, new = DenseBlock(n, self.growth, self.dropout_rate, name=f'up{b}')(x, train)
    return {'out': nn.Conv(self.num_classes, (1, 1), name='classifier')(x)}


_PAPER = ('The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for Semantic '
          'Segmentation (Jegou et al. 2016, arXiv:1611.09326)')
_TABLE2 = {
    'fc_densenet56': (dict(down_layers=(4,) * 5, bottleneck_layers=4, growth=12), 1_376_795, '1.5M'),
    'fc_densenet67': (dict(down_layers=(5,) * 5, bottleneck_layers=5, growth=16), 3_463_243, '3.5M'),
    'fc_densenet103': (dict(), 9_322_091, '9.4M'),
}
for _name, (_kwargs, _count, _paper_count) in _TABLE2.items():
  zoo.register(_name, lambda kwargs=_kwargs: FCDenseNet(**kwargs),
               inputs=zoo.image_input(224, 224, 3), apply_kwargs={'train': False}, paper=_PAPER,
               reference_params=_count,
               reference_source=f"layer sizes of the authors' code (paper Table 2: {_paper_count})")
zoo.register('fc_densenet_scenes', lambda: FCDenseNet(
    num_classes=6, down_layers=(3, 3, 3), bottleneck_layers=3, growth=8, first_features=24),
             inputs=zoo.image_input(64, 64, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=None, reference_source='project preset for the 64x64 scenes set')
