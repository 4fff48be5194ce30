"""The DDPM U-Net, epsilon_theta(x_t, t), and Improved DDPM's learned-variance variant.

Papers:
  * Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239), sec. 4 and
    appendix B: a PixelCNN++-style U-Net of Wide ResNet blocks with group normalisation, the step t
    fed to every block through the Transformer's sinusoidal position embedding, and self-attention
    at the 16x16 resolution; for CIFAR-10 two residual blocks per resolution, four resolutions
    (32, 16, 8, 4), 35.7M parameters, dropout 0.1. Layer structure, names and initialisation follow
    the official TensorFlow code (hojonathanho/diffusion, diffusion_tf/models/unet.py): swish,
    32 groups, a 4*ch timestep MLP, 1x1 shortcut where channels change, stride-2 3x3 convolution to
    downsample, nearest-neighbour x2 + 3x3 convolution to upsample, fan-avg uniform init, and zero
    init of each residual branch's last layer and of the output convolution.
  * Improved Denoising Diffusion Probabilistic Models (Nichol, Dhariwal 2021, arXiv:2102.09672),
    sec. 3.1: `learn_sigma=True` doubles the output channels, the second half being the
    per-dimension v of eq. 15 (see `process.model_log_variance`). Its official code
    (openai/improved-diffusion) further adds attention at 8x8, multi-head attention
    (`num_heads`), and `scale_shift_norm` (the timestep embedding scales and shifts the second group
    norm's output instead of being added before it); its README's CIFAR-10 flags are ch=128, three
    residual blocks per resolution, dropout 0.3 (4 heads and attention at 16 and 8 by default).

Interface: `UNet(...).apply(variables, x, t, train=...)` with x [B, H, W, C] float32 in [-1, 1] and
t [B] steps -> [B, H, W, C] (epsilon), or [B, H, W, 2C] (epsilon, v) when `learn_sigma`. t is
normally int32; float values are accepted (the embedding is continuous) for FastDPM's continuous
steps and Improved DDPM's rescaled steps t * 1000 / T. Dropout needs the 'dropout' RNG when
`train=True`.

Attention placement is the DDPM code's resolution rule: an attention block follows a residual block
exactly when that block's feature map has a side length listed in `attn_resolutions`; the middle of
the U-Net always has one.

Departures (none changes the parameter count):
  * Upsampling repeats each pixel (as the PyTorch port pesser/pytorch_diffusion and
    improved-diffusion do); the TF code's nearest resize with `align_corners=True` rounds
    out_index * (in - 1) / (out - 1) instead, which picks slightly different source pixels.
  * For the Improved DDPM variant we keep DDPM's sinusoidal embedding ([sin, cos] with frequencies
    10000^(-i/(d/2-1))), DDPM's stride-2 'SAME' padding and group-norm epsilon 1e-6;
    improved-diffusion uses [cos, sin] with 10000^(-i/(d/2)), symmetric padding 1 and
    epsilon 1e-5.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import zoo
from jaxpapers.nn.group_norm import GroupNorm

# The TF code's `default_init`: variance scaling 1.0, fan-average, uniform.
_default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
_zero_init = nn.initializers.zeros


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
  """DDPM's sinusoidal embedding of [B] (possibly fractional) steps -> [B, dim]."""
  half = dim // 2
  freqs = jnp.exp(-np.log(10000.0) / (half - 1) * jnp.arange(half, dtype=jnp.float32))
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _conv(features: int, name: str, *, strides: int = 1, zero: bool = False) -> nn.Conv:
  return nn.Conv(features, (3, 3), strides=strides, padding='SAME', name=name,
                 kernel_init=_zero_init if zero else _default_init)


def _dense(features: int, name: str, *, zero: bool = False) -> nn.Dense:
  return nn.Dense(features, name=name, kernel_init=_zero_init if zero else _default_init)


class ResnetBlock(nn.Module):
  """GN-swish-conv, + timestep projection, GN-swish-dropout-conv, plus a (1x1) shortcut."""
  out_ch: int
  dropout: float
  num_groups: int
  scale_shift_norm: bool

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, train: bool) -> jax.Array:
    h = nn.swish(GroupNorm(self.num_groups, name='norm1')(x))
    h = _conv(self.out_ch, 'conv1')(h)
    emb_ch = 2 * self.out_ch if self.scale_shift_norm else self.out_ch
    emb = _dense(emb_ch, 'temb_proj')(nn.swish(temb))[:, None, None, :]
    norm2 = GroupNorm(self.num_groups, name='norm2')
    if self.scale_shift_norm:
      scale, shift = jnp.split(emb, 2, axis=-1)
      h = norm2(h) * (1.0 + scale) + shift
    else:
      h = norm2(h + emb)
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.swish(h))
    h = _conv(self.out_ch, 'conv2', zero=True)(h)
    if x.shape[-1] != self.out_ch:
      x = _dense(self.out_ch, 'nin_shortcut')(x)
    return x + h


class AttnBlock(nn.Module):
  """Residual self-attention over all spatial positions (q, k, v and output are 1x1 layers)."""
  num_heads: int
  num_groups: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, height, width, c = x.shape
    if c % self.num_heads:
      raise ValueError(f'{c} channels do not split into {self.num_heads} heads')
    h = GroupNorm(self.num_groups, name='norm')(x).reshape(b, height * width, c)
    heads = lambda y: y.reshape(b, height * width, self.num_heads, c // self.num_heads)
    q, k, v = (heads(_dense(c, name)(h)) for name in ('q', 'k', 'v'))
    w = jnp.einsum('bqhc,bkhc->bhqk', q, k) * (c // self.num_heads) ** -0.5
    h = jnp.einsum('bhqk,bkhc->bqhc', jax.nn.softmax(w, axis=-1), v).reshape(b, height * width, c)
    return x + _dense(c, 'proj_out', zero=True)(h).reshape(x.shape)


class UNet(nn.Module):
  """epsilon_theta(x_t, t); see the module docstring. Defaults are DDPM's CIFAR-10 model."""
  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  num_heads: int = 1
  num_groups: int = 32
  scale_shift_norm: bool = False
  learn_sigma: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, train: bool) -> jax.Array:
    if x.ndim != 4 or t.shape != x.shape[:1]:
      raise ValueError(f'expected x [B, H, W, C] and t [B], got {x.shape} and {t.shape}')
    if x.shape[1] % 2 ** (len(self.ch_mult) - 1) or x.shape[2] % 2 ** (len(self.ch_mult) - 1):
      raise ValueError(f'{x.shape[1:3]} images cannot be halved {len(self.ch_mult) - 1} times')
    out_ch = x.shape[-1] * (2 if self.learn_sigma else 1)
    block = lambda ch, name: ResnetBlock(ch, self.dropout, self.num_groups, self.scale_shift_norm,
                                         name=name)
    attn = lambda name: AttnBlock(self.num_heads, self.num_groups, name=name)

    temb = timestep_embedding(t, self.ch)
    temb = _dense(4 * self.ch, 'temb_dense0')(temb)
    temb = _dense(4 * self.ch, 'temb_dense1')(nn.swish(temb))

    # Downsampling; every intermediate map is kept for the skip connections.
    hs = [_conv(self.ch, 'conv_in')(x)]
    for level, mult in enumerate(self.ch_mult):
      for i in range(self.num_res_blocks):
        h = block(self.ch * mult, f'down_{level}_block_{i}')(hs[-1], temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn(f'down_{level}_attn_{i}')(h)
        hs.append(h)
      if level != len(self.ch_mult) - 1:
        hs.append(_conv(hs[-1].shape[-1], f'down_{level}_downsample', strides=2)(hs[-1]))

    h = hs[-1]
    h = block(h.shape[-1], 'mid_block_1')(h, temb, train)
    h = attn('mid_attn_1')(h)
    h = block(h.shape[-1], 'mid_block_2')(h, temb, train)

    for level, mult in reversed(list(enumerate(self.ch_mult))):
      for i in range(self.num_res_blocks + 1):
        h = block(self.ch * mult, f'up_{level}_block_{i}')(
            jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn(f'up_{level}_attn_{i}')(h)
      if level != 0:
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
        h = _conv(h.shape[-1], f'up_{level}_upsample')(h)

    h = nn.swish(GroupNorm(self.num_groups, name='norm_out')(h))
    return _conv(out_ch, 'conv_out', zero=True)(h)


def _unet_inputs(size: int, channels: int = 3):
  return lambda: (jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32),
                  jax.ShapeDtypeStruct((1,), jnp.int32))


zoo.register(
    'ddpm_cifar10',
    lambda: UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                 dropout=0.1),
    inputs=_unet_inputs(32),
    paper='Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239)',
    reference_params=35_746_307,
    reference_source=('paper: 35.7M; exact count of the Hugging Face diffusers port of the '
                      'official checkpoint, google/ddpm-cifar10-32 (UNet2DModel)'),
    apply_kwargs={'train': False})

# 52,546,438 parameters, equal to a layer-by-layer count of improved-diffusion's UNetModel with
# these flags (image_size 32, num_channels 128, num_res_blocks 3, learn_sigma, dropout 0.3,
# attention at 16 and 8, 4 heads, scale-shift norm; see tests/diffusion/test_unet.py). No published
# figure states it; the official checkpoint's name, cifar10_uncond_50M_500K.pt, suggests about 50M.
zoo.register(
    'iddpm_cifar10',
    lambda: UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=3, attn_resolutions=(16, 8),
                 dropout=0.3, num_heads=4, scale_shift_norm=True, learn_sigma=True),
    inputs=_unet_inputs(32),
    paper=('Improved Denoising Diffusion Probabilistic Models (Nichol, Dhariwal 2021, '
           'arXiv:2102.09672)'),
    reference_params=None,
    reference_source=('none published; architecture from the openai/improved-diffusion README '
                      'flags for unconditional CIFAR-10 (L_hybrid, cosine schedule)'),
    apply_kwargs={'train': False})

# The CPU reproductions' networks on the offline 8x8 digits (experiments/configs/ddpm.py): two
# resolutions (8, 4) with attention at 4x4; and a one-resolution U-Net with only the middle
# attention block, for tests (few layers, so it compiles quickly).
_DIGITS = 'project preset for the offline 8x8 digits; no published figure'
zoo.register(
    'ddpm_digits',
    lambda: UNet(ch=32, ch_mult=(1, 2), num_res_blocks=2, attn_resolutions=(4,), dropout=0.1,
                 num_groups=8),
    inputs=_unet_inputs(8, 1),
    paper='Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239)',
    reference_params=None, reference_source=_DIGITS, apply_kwargs={'train': False})
zoo.register(
    'ddpm_tiny',
    lambda: UNet(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.1,
                 num_groups=4),
    inputs=_unet_inputs(8, 1),
    paper='Denoising Diffusion Probabilistic Models (Ho, Jain, Abbeel 2020, arXiv:2006.11239)',
    reference_params=None, reference_source=_DIGITS + ' (tests)', apply_kwargs={'train': False})
