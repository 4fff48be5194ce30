"""GoogLeNet: "Going Deeper with Convolutions" (Szegedy et al. 2014, arXiv:1409.4842), as
torchvision's `googlenet`.

Follows sec. 5 and Table 1: the stem (7x7/2 convolution, 3x3/2 max pool, 1x1 and 3x3
convolutions, 3x3/2 max pool), nine Inception modules (3a-b, 4a-e, 5a-b; each concatenates a 1x1
branch, a 1x1-reduce + 3x3 branch, a 1x1-reduce + "5x5" branch and a 3x3 max pool + 1x1 projection
branch, Figure 2b) with 3x3/2 max pools after 3b and 4e, global average pooling, dropout and a
linear classifier. The two auxiliary classifiers of sec. 5 sit on 4a and 4d: average pooling to 4x4,
a 1x1 convolution with 128 filters, a 1024-unit fully connected layer with ReLU, dropout 0.7, and a
linear classifier. During training their losses are added to the main loss with weight 0.3
(`training_loss`); at inference they are discarded.

Auxiliary logits are computed only when `train=True` and are returned through the
'intermediates' collection (`aux1_logits`, `aux2_logits`), so the model's output is always the main
logits and any classifier loop can train it: apply with `mutable=['batch_stats', 'intermediates']`
to get them. Their parameters are created at `init` whatever `train` is.

Departures, all torchvision's, so that its weights convert: batch normalisation (eps 1e-3, from
Inception-v2, arXiv:1502.03167) after every convolution, which then has no bias; a 3x3 instead of a
5x5 kernel in the "5x5" branch (torchvision's known discrepancy, kept for its weights); max pools
that round their output size up (ceil_mode, as Caffe) and adaptive 4x4 average pooling in the
auxiliary heads (the paper: 5x5 average pool with stride 3, the same 4x4 on 14x14 maps but
slightly different windows). Initialisation is torchvision's (N(0, 0.01^2), truncated at +-2,
i.e. in practice untruncated). Dropout before the classifier is the paper's 40% (torchvision 20%);
the input normalisation of torchvision's `transform_input` is not part of the model.

Parameter counts (torchvision): with the auxiliary heads (`googlenet`, torchvision's default when
it builds untrained weights) 13,004,888; without (`googlenet_no_aux`, the size of its pretrained
model) 6,624,904. The difference is the two heads, each c*128 (1x1 convolution on c channels)
+ 256 (BN) + 2048*1024 + 1024 (fc1) + 1024*1000 + 1000 (fc2): aux1 (c = 512) 3,188,968 and aux2
(c = 528) 3,191,016.
Modules are named as torchvision's state dict.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxpapers import zoo
from jaxpapers.convnets import layers

_weight_init = nn.initializers.normal(0.01)

# Sec. 5: the auxiliary classifiers' losses count with weight 0.3 during training.
AUX_LOSS_WEIGHT = 0.3


def _conv(features, kernel_size, name, strides=1, padding=0):
  return layers.ConvBN(features, kernel_size, strides=strides, padding=padding,
                       kernel_init=_weight_init, name=name)


class Inception(nn.Module):
  """Figure 2b with Table 1's widths: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""
  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    branch1 = _conv(self.ch1x1, 1, 'branch1')(x, train)
    branch2 = _conv(self.ch3x3red, 1, 'branch2_0')(x, train)
    branch2 = _conv(self.ch3x3, 3, 'branch2_1', padding=1)(branch2, train)
    branch3 = _conv(self.ch5x5red, 1, 'branch3_0')(x, train)
    branch3 = _conv(self.ch5x5, 3, 'branch3_1', padding=1)(branch3, train)
    branch4 = layers.pool(x, 'max', 3, 1, padding=1, ceil_mode=True)
    branch4 = _conv(self.pool_proj, 1, 'branch4_1')(branch4, train)
    return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class InceptionAux(nn.Module):
  num_classes: int
  dropout_rate: float = 0.7

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.adaptive_avg_pool(x, (4, 4))
    x = _conv(128, 1, 'conv')(x, train)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(1024, kernel_init=_weight_init, name='fc1')(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=_weight_init, name='fc2')(x)


class GoogLeNet(nn.Module):
  num_classes: int = 1000
  aux_logits: bool = True
  dropout_rate: float = 0.4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = _conv(64, 7, 'conv1', strides=2, padding=3)(x, train)
    x = layers.pool(x, 'max', 3, 2, ceil_mode=True)
    x = _conv(64, 1, 'conv2')(x, train)
    x = _conv(192, 3, 'conv3', padding=1)(x, train)
    x = layers.pool(x, 'max', 3, 2, ceil_mode=True)
    x = Inception(64, 96, 128, 16, 32, 32, name='inception3a')(x, train)
    x = Inception(128, 128, 192, 32, 96, 64, name='inception3b')(x, train)
    x = layers.pool(x, 'max', 3, 2, ceil_mode=True)
    x = Inception(192, 96, 208, 16, 48, 64, name='inception4a')(x, train)
    self._aux('aux1', x, train)
    x = Inception(160, 112, 224, 24, 64, 64, name='inception4b')(x, train)
    x = Inception(128, 128, 256, 24, 64, 64, name='inception4c')(x, train)
    x = Inception(112, 144, 288, 32, 64, 64, name='inception4d')(x, train)
    self._aux('aux2', x, train)
    x = Inception(256, 160, 320, 32, 128, 128, name='inception4e')(x, train)
    x = layers.pool(x, 'max', 2, 2, ceil_mode=True)
    x = Inception(256, 160, 320, 32, 128, 128, name='inception5a')(x, train)
    x = Inception(384, 192, 384, 48, 128, 128, name='inception5b')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=_weight_init, name='fc')(x)

  def _aux(self, name: str, x: jax.Array, train: bool) -> None:
    # At init the heads run whatever `train` is, so their parameters exist for training.
    if self.aux_logits and (train or self.is_initializing()):
      logits = InceptionAux(self.num_classes, name=name)(x, train)
      if train:
        self.sow('intermediates', f'{name}_logits', logits)


def training_loss(logits: jax.Array, intermediates: dict, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of the main classifier plus 0.3 times each auxiliary one's.

  `intermediates` is the 'intermediates' collection of a training-mode `apply` (empty without
  auxiliary heads).
  """
  xent = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()
  aux = sum(xent(sown[0]) for sown in intermediates.values())
  return xent(logits) + AUX_LOSS_WEIGHT * aux


_PAPER = 'Going Deeper with Convolutions (Szegedy et al. 2014, arXiv:1409.4842)'
zoo.register('googlenet', GoogLeNet, inputs=zoo.image_input(224, 224, 3),
             apply_kwargs={'train': False}, paper=_PAPER, reference_params=13_004_888,
             reference_source='torchvision googlenet (aux_logits=True, its default untrained)')
zoo.register('googlenet_no_aux', lambda: GoogLeNet(aux_logits=False),
             inputs=zoo.image_input(224, 224, 3), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=6_624_904, reference_source='torchvision googlenet(aux_logits=False)')
