"""Residual networks: ResNet (ImageNet and CIFAR-10), plain baselines, Wide ResNet, ResNeXt.

Papers and the parts followed:
  * Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun 2015, arXiv:1512.03385).
    ImageNet networks, sec. 3.3-3.4 and Table 1: 7x7/2 convolution, 3x3/2 max pool, four stages of
    basic blocks (two 3x3 convolutions, Figure 5 left; ResNet-18/34) or bottleneck blocks (1x1, 3x3,
    1x1 with 4x expansion, Figure 5 right; ResNet-50/101/152), batch norm after every convolution
    and before the activation, the first block of stages 2-4 downsampling with stride 2, a 1x1
    projection (+ BN) on shortcuts that change shape (option B), global average pooling and the
    classifier. As torchvision ("ResNet v1.5"), the bottleneck strides in its 3x3 convolution, not
    in the first 1x1 as in the paper; this changes no parameter count.
    CIFAR-10 networks, sec. 4.2: a 3x3 convolution with 16 filters, three stages of n basic blocks
    with 16, 32, 64 filters on 32, 16, 8 maps, global average pooling and a 10-way classifier; depth
    6n + 2 (`resnet20` ... `resnet110`, n = 3, 5, 7, 9, 18), and identity shortcuts everywhere
    (option A): where a shortcut changes shape, it takes every second pixel and appends zero
    channels, so it has no parameters. Table 6 gives 0.27M, 0.46M, 0.66M, 0.85M, 1.7M; the exact
    counts, with BN scale and bias, are 97,216 n - 21,926: 269,722 / 464,154 / 658,586 / 853,018 /
    1,727,962. (272,474, a figure often quoted for ResNet-20, is the same network with option-B
    projections on its two downsampling shortcuts: 2,560 weights + 192 BN parameters more.)
    Plain networks (sec. 4.1 and 4.2, Figure 6 left): the same stacks without any shortcut,
    `residual=False` (`plain20`, `plain56`). Since option-A shortcuts have no parameters, plain
    CIFAR networks have exactly the counts of their residual twins.
  * Delving Deep into Rectifiers (He et al. 2015, arXiv:1502.01852), which the ResNet paper uses
    for initialisation: convolutions are N(0, 2/n) with n = k*k*c_out (fan-out, as torchvision);
    BN scales start at 1 and biases at 0.
  * Wide Residual Networks (Zagoruyko & Komodakis 2016, arXiv:1605.07146). CIFAR networks WRN-d-k,
    sec. 2 and Table 1: a 3x3 convolution with 16 filters, then three groups of n = (d - 4) / 6
    pre-activation blocks (BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3, Figure 1d) with 16k, 32k, 64k
    filters, a final BN-ReLU, global average pooling and the classifier. Dropout sits between the
    two convolutions, after the ReLU (sec. 2.4). Layout as the authors' code
    (szagoruyko/wide-residual-networks): no convolution biases, a 1x1 convolution (no BN) on
    shortcuts that change shape, applied to the block's pre-activated input, and He fan-in
    initialisation. `wrn_28_10` (dropout 0.3, the paper's WRN-28-10-dropout) has 36,479,194
    parameters, the paper's 36.5M.
    ImageNet wide bottlenecks (the paper's ImageNet WRN-50-2-bottleneck, torchvision's
    `wide_resnet50_2`, `wide_resnet101_2`): ResNet-50/101 with the inner 1x1/3x3 widths doubled.
  * Aggregated Residual Transformations for Deep Neural Networks (Xie et al. 2016,
    arXiv:1611.05431), sec. 3.3, Figure 3c and Table 1: the bottleneck's 3x3 convolution is grouped,
    C groups (the cardinality) of d channels in the first stage, doubling with each stage
    (`resnext50_32x4d`: C = 32, d = 4; torchvision's `resnext101_32x8d`: ResNet-101's depths
    with C = 32, d = 8).

One bottleneck serves ResNet, WRN-50-2 and ResNeXt, as in torchvision: the inner width is
int(planes * width_per_group / 64) * groups, with a grouped 3x3 convolution when groups > 1.
ImageNet modules are named as torchvision's state dict (`conv1`, `bn1`, `layer{s}_{b}/...`,
`downsample_0`, `downsample_1`, `fc`), which `torchvision_convert` relies on. The classifier keeps
torch's default Linear weight init (bias zero).

Departure from the ResNet paper: flax's BatchNorm updates the running variance with the biased
batch variance (see `layers`). Option-A zero channels are appended after the identity channels,
as fb.resnet.torch does (akamaster's popular PyTorch version splits them on both sides); the two
are the same network up to a fixed permutation of channels.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.convnets import layers


def _conv(features: int, kernel: int, name: str, strides: int = 1, groups: int = 1,
          init_mode: str = 'fan_out', dilation: int = 1) -> nn.Conv:
  # torch geometry: symmetric padding k // 2 (flax's 'SAME' pads asymmetrically at stride 2).
  return nn.Conv(features, (kernel, kernel), strides=strides, padding=dilation * (kernel // 2),
                 kernel_dilation=dilation, feature_group_count=groups, use_bias=False,
                 kernel_init=layers.he_normal(init_mode), name=name)


def zero_pad_shortcut(x: jax.Array, features: int, strides: int) -> jax.Array:
  """Option A: subsample by `strides` and append zero channels up to `features`."""
  x = x[:, ::strides, ::strides, :]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


def _shortcut(x: jax.Array, features: int, strides: int, option: str, train: bool) -> jax.Array:
  """The identity, or where the shape changes option A (zero padding) or B (1x1 conv + BN)."""
  if strides == 1 and x.shape[-1] == features:
    return x
  if option == 'A':
    return zero_pad_shortcut(x, features, strides)
  x = _conv(features, 1, 'downsample_0', strides=strides)(x)
  return layers.batch_norm(train, 'downsample_1')(x)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BN; ReLU after the first and after the sum (Figure 5 left)."""
  features: int
  strides: int = 1
  shortcut: str = 'B'
  residual: bool = True

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = _conv(self.features, 3, 'conv1', strides=self.strides)(x)
    y = nn.relu(layers.batch_norm(train, 'bn1')(y))
    y = _conv(self.features, 3, 'conv2')(y)
    y = layers.batch_norm(train, 'bn2')(y)
    if self.residual:
      y = y + _shortcut(x, self.features, self.strides, self.shortcut, train)
    return nn.relu(y)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (grouped when groups > 1: ResNeXt), 1x1 expand to 4 * planes (Figure 5
  right)."""
  planes: int
  strides: int = 1
  groups: int = 1
  width_per_group: int = 64
  residual: bool = True
  dilation: int = 1  # of the 3x3 convolution (dilated backbones of dense prediction)

  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    width = int(self.planes * self.width_per_group / 64) * self.groups
    out = self.planes * self.expansion
    y = nn.relu(layers.batch_norm(train, 'bn1')(_conv(width, 1, 'conv1')(x)))
    y = _conv(width, 3, 'conv2', strides=self.strides, groups=self.groups,
              dilation=self.dilation)(y)
    y = nn.relu(layers.batch_norm(train, 'bn2')(y))
    y = layers.batch_norm(train, 'bn3')(_conv(out, 1, 'conv3')(y))
    if self.residual:
      y = y + _shortcut(x, out, self.strides, 'B', train)
    return nn.relu(y)


def _imagenet_stages(x: jax.Array, train: bool, stage_sizes: Sequence[int], block: str, groups: int,
                     width_per_group: int, residual: bool,
                     dilate: Sequence[bool] = (False, False, False)) -> list[jax.Array]:
  """Stem and stages of Table 1 (called inside a compact module, whose submodules they become);
  the output of every stage. `dilate[s - 1]` replaces stage s's stride by dilation, as
  torchvision's `replace_stride_with_dilation`: the stage's first block keeps the previous
  dilation, the later ones use the doubled one."""
  x = _conv(64, 7, 'conv1', strides=2)(x)
  x = nn.relu(layers.batch_norm(train, 'bn1')(x))
  x = layers.pool(x, 'max', 3, 2, padding=1)
  outputs, dilation = [], 1
  for stage, size in enumerate(stage_sizes):
    previous = dilation
    stride = 2 if stage > 0 else 1
    if stage > 0 and dilate[stage - 1]:
      dilation, stride = dilation * stride, 1
    for index in range(size):
      strides = stride if index == 0 else 1
      name = f'layer{stage + 1}_{index}'
      if block == 'basic':
        if dilation > 1:
          raise ValueError('dilation needs bottleneck blocks (as torchvision)')
        module = BasicBlock(64 * 2**stage, strides, residual=residual, name=name)
      elif block == 'bottleneck':
        module = Bottleneck(64 * 2**stage, strides, groups, width_per_group, residual=residual,
                            dilation=previous if index == 0 else dilation, name=name)
      else:
        raise ValueError(f'block must be "basic" or "bottleneck", got {block!r}')
      x = module(x, train)
    outputs.append(x)
  return outputs


class ResNet(nn.Module):
  """The ImageNet ResNet of Table 1 (also WRN-50-2 and ResNeXt through the bottleneck's widths)."""
  stage_sizes: Sequence[int]
  block: str = 'basic'
  num_classes: int = 1000
  groups: int = 1
  width_per_group: int = 64
  residual: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = _imagenet_stages(x, train, self.stage_sizes, self.block, self.groups,
                         self.width_per_group, self.residual)[-1]
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=layers.torch_linear_init, name='fc')(x)


class ResNetFeatures(nn.Module):
  """The ImageNet ResNet without its pooling and classifier: the outputs of its four stages
  (C2..C5 of FPN, strides 4, 8, 16, 32 unless `dilate` trades strides for dilation), for dense
  prediction and detection backbones. Named as torchvision's `resnet*` minus `fc`."""
  stage_sizes: Sequence[int]
  block: str = 'basic'
  groups: int = 1
  width_per_group: int = 64
  dilate: Sequence[bool] = (False, False, False)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    return _imagenet_stages(x, train, self.stage_sizes, self.block, self.groups,
                            self.width_per_group, True, self.dilate)


class CifarResNet(nn.Module):
  """The CIFAR-10 ResNet of sec. 4.2: depth 6n + 2, option-A shortcuts unless `shortcut='B'`."""
  depth: int
  num_classes: int = 10
  shortcut: str = 'A'
  residual: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if (self.depth - 2) % 6:
      raise ValueError(f'CIFAR ResNet depth must be 6n + 2, got {self.depth}')
    n = (self.depth - 2) // 6
    x = _conv(16, 3, 'conv1')(x)
    x = nn.relu(layers.batch_norm(train, 'bn1')(x))
    for stage, features in enumerate((16, 32, 64)):
      for index in range(n):
        strides = 2 if stage > 0 and index == 0 else 1
        x = BasicBlock(features, strides, self.shortcut, self.residual,
                       name=f'layer{stage + 1}_{index}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=layers.torch_linear_init, name='fc')(x)


class WideBlock(nn.Module):
  """Pre-activation block of Figure 1d: BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3, plus shortcut."""
  features: int
  strides: int = 1
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    o1 = nn.relu(layers.batch_norm(train, 'bn1')(x))
    y = _conv(self.features, 3, 'conv1', strides=self.strides, init_mode='fan_in')(o1)
    y = nn.relu(layers.batch_norm(train, 'bn2')(y))
    y = nn.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(y)
    y = _conv(self.features, 3, 'conv2', init_mode='fan_in')(y)
    if self.strides == 1 and x.shape[-1] == self.features:
      return y + x
    # As the authors' code: the projection sees the pre-activated input o1.
    return y + _conv(self.features, 1, 'shortcut', strides=self.strides, init_mode='fan_in')(o1)


class WideResNet(nn.Module):
  """WRN-depth-widen_factor for CIFAR (sec. 2, Table 1)."""
  depth: int = 28
  widen_factor: int = 10
  dropout_rate: float = 0.3
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if (self.depth - 4) % 6:
      raise ValueError(f'WRN depth must be 6n + 4, got {self.depth}')
    n = (self.depth - 4) // 6
    x = _conv(16, 3, 'conv1', init_mode='fan_in')(x)
    for group, width in enumerate((16, 32, 64)):
      for index in range(n):
        strides = 2 if group > 0 and index == 0 else 1
        x = WideBlock(width * self.widen_factor, strides, self.dropout_rate,
                      name=f'group{group}_{index}')(x, train)
    x = nn.relu(layers.batch_norm(train, 'bn')(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=layers.he_normal('fan_in'), name='fc')(x)


_RESNET = 'Deep Residual Learning for Image Recognition (He et al. 2015, arXiv:1512.03385)'
_WRN = 'Wide Residual Networks (Zagoruyko & Komodakis 2016, arXiv:1605.07146)'
_RESNEXT = ('Aggregated Residual Transformations for Deep Neural Networks '
            '(Xie et al. 2016, arXiv:1611.05431)')
_IMAGENET = {
    'resnet18': (_RESNET, dict(stage_sizes=(2, 2, 2, 2), block='basic'), 11_689_512),
    'resnet34': (_RESNET, dict(stage_sizes=(3, 4, 6, 3), block='basic'), 21_797_672),
    'resnet50': (_RESNET, dict(stage_sizes=(3, 4, 6, 3), block='bottleneck'), 25_557_032),
    'resnet101': (_RESNET, dict(stage_sizes=(3, 4, 23, 3), block='bottleneck'), 44_549_160),
    'resnet152': (_RESNET, dict(stage_sizes=(3, 8, 36, 3), block='bottleneck'), 60_192_808),
    'wide_resnet50_2': (_WRN, dict(stage_sizes=(3, 4, 6, 3), block='bottleneck',
                                   width_per_group=128), 68_883_240),
    'wide_resnet101_2': (_WRN, dict(stage_sizes=(3, 4, 23, 3), block='bottleneck',
                                    width_per_group=128), 126_886_696),
    'resnext50_32x4d': (_RESNEXT, dict(stage_sizes=(3, 4, 6, 3), block='bottleneck', groups=32,
                                       width_per_group=4), 25_028_904),
    'resnext101_32x8d': (_RESNEXT, dict(stage_sizes=(3, 4, 23, 3), block='bottleneck', groups=32,
                                        width_per_group=8), 88_791_336),
}
for _name, (_paper, _kwargs, _count) in _IMAGENET.items():
  zoo.register(_name, lambda kwargs=_kwargs: ResNet(**kwargs), inputs=zoo.image_input(224, 224, 3),
               apply_kwargs={'train': False}, paper=_paper, reference_params=_count,
               reference_source=f'torchvision {_name}')

# Sec. 4.2, Table 6; the count is exact from the layer sizes (the paper rounds it).
_CIFAR_N = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
for _depth, _n in _CIFAR_N.items():
  zoo.register(f'resnet{_depth}', lambda depth=_depth: CifarResNet(depth),
               inputs=zoo.image_input(32, 32, 3), apply_kwargs={'train': False}, paper=_RESNET,
               reference_params=97_216 * _n - 21_926,
               reference_source=f'closed form 97,216 n - 21,926 with n = {_n} (Table 6 rounds it)')
for _depth in (20, 56):
  zoo.register(f'plain{_depth}', lambda depth=_depth: CifarResNet(depth, residual=False),
               inputs=zoo.image_input(32, 32, 3), apply_kwargs={'train': False}, paper=_RESNET,
               reference_params=97_216 * _CIFAR_N[_depth] - 21_926,
               reference_source=f'resnet{_depth} (option-A shortcuts have no parameters)')
zoo.register('wrn_28_10', lambda: WideResNet(28, 10), inputs=zoo.image_input(32, 32, 3),
             apply_kwargs={'train': False}, paper=_WRN, reference_params=36_479_194,
             reference_source="layer sizes of the authors' code (paper: 36.5M)")
