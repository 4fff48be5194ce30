"""Vision Transformer (ViT): a pre-norm transformer encoder over image patches.

"An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale" (Dosovitskiy et al.
2020, arXiv:2010.11929), section 3.1, Eqs. 1-4:
  (1) z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos   (patch embedding as a convolution whose
      stride equals its kernel size, a learnable class token, learned 1-D position embeddings),
  (2) z'_l = MSA(LN(z_{l-1})) + z_{l-1},   (3) z_l = MLP(LN(z'_l)) + z'_l   (pre-norm; the MLP
      has two layers with a GELU),
  (4) y = LN(z_L^0)   (the class token's final state, after a final LayerNorm),
then the classification head; Table 1 gives the B/L/H sizes. During pre-training the head is an
MLP with one hidden layer ("pre-logits": dense + tanh, `representation_size`), when fine-tuning a
single linear layer, initialised to zero (section 3.2); the presets use the fine-tuning head.
`num_classes=None` returns y itself (or the pre-logits) for use as a feature extractor.

Departures: the GELU is the exact erf form, as in timm and Hugging Face (the paper's released JAX
code uses Flax's tanh approximation; the two differ by under 1e-3 per unit). Position embeddings
are sized from the input image at `init`; other resolutions need the 2-D interpolation of section
3.2, which is not done here. Dropout follows the embedding, the attention branch and both MLP
layers; appendix B.1's Table 3 uses 0.1 on ImageNet(-21k) and 0 on JFT-300M, the presets use 0.

Parameter names follow the released code: `embedding` (the patch convolution), `cls`,
`pos_embedding`, `encoderblock_{i}/{ln_1,attn/{query,key,value,out},ln_2,mlp/{fc1,fc2}}`,
`encoder_norm`, `pre_logits`, `head`. timm's fused `qkv` [3d, d] weight splits row-wise into
`query`, `key`, `value` (transposed).

Parameter counts (reference: timm's `vit_*_patch*_224` ImageNet-1k models, also Hugging Face
`ViTForImageClassification` with the same sizes; 224x224 input, 1000 classes, no pre-logits):
  patch conv (p^2 * 3 * d + d) + class token d + positions (N + 1) d
  + L (12 d^2 + 13 d) (every preset has mlp_dim = 4d) + final LN 2d + head (1000 d + 1000),
  N = (224 / p)^2 patches
  vit_b16 (d 768, L 12, p 16)        86,567,656
  vit_b32 (d 768, L 12, p 32)        88,224,232
  vit_l16 (d 1024, L 24, p 16)      304,326,632
  vit_h14 (d 1280, L 32, p 14)      632,045,800
(Table 1 rounds the models to 86M, 307M and 632M. timm's released H/14 weights are ImageNet-21k
ones without a head; its count is the same architecture with the 1000-class head.)
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpapers import zoo
from jaxpapers.nn.attention import AttentionFn, MultiHeadAttention, dot_product_attention

Array = jax.Array

_dense_init = functools.partial(nn.Dense, kernel_init=nn.initializers.xavier_uniform(),
                                bias_init=nn.initializers.normal(1e-6))


class MlpBlock(nn.Module):
  """fc2(dropout(gelu(fc1(x)))), with dropout after fc2 too."""
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    h = nn.gelu(_dense_init(self.mlp_dim, name='fc1')(x), approximate=False)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    h = _dense_init(x.shape[-1], name='fc2')(h)
    return nn.Dropout(self.dropout_rate, deterministic=not train)(h)


class EncoderBlock(nn.Module):
  """Eqs. 2-3: pre-norm self-attention and MLP, each inside a residual connection."""
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  attention_fn: AttentionFn = dot_product_attention

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    h = nn.LayerNorm(1e-6, name='ln_1')(x)
    h = MultiHeadAttention(self.num_heads, dropout_rate=self.attention_dropout_rate,
                           attention_fn=self.attention_fn,
                           kernel_init=nn.initializers.xavier_uniform(),
                           name='attn')(h, train=train)
    x = x + nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    h = nn.LayerNorm(1e-6, name='ln_2')(x)
    return x + MlpBlock(self.mlp_dim, self.dropout_rate, name='mlp')(h, train=train)


class ViT(nn.Module):
  """`vit(images [B, H, W, C], train=False) -> logits [B, num_classes]`.

  H and W must be multiples of `patch_size`. With `num_classes=None` the output is the class
  token's representation ([B, hidden_dim], or [B, representation_size] with pre-logits).
  """
  num_classes: int | None = 1000
  patch_size: int = 16
  hidden_dim: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  representation_size: int | None = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  attention_fn: AttentionFn = dot_product_attention

  @nn.compact
  def __call__(self, images: Array, *, train: bool = False) -> Array:
    batch, height, width, _ = images.shape
    p = self.patch_size
    if height % p or width % p:
      raise ValueError(f'image size {height}x{width} is not a multiple of the patch size {p}')
    x = nn.Conv(self.hidden_dim, (p, p), strides=(p, p), padding='VALID', name='embedding')(images)
    x = x.reshape(batch, -1, self.hidden_dim)  # [B, N, d], patches in raster order.
    cls = self.param('cls', nn.initializers.zeros, (1, 1, self.hidden_dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.hidden_dim)), x], axis=1)
    x = x + self.param('pos_embedding', nn.initializers.normal(0.02), (1,) + x.shape[1:])
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate,
                       self.attention_dropout_rate, self.attention_fn,
                       name=f'encoderblock_{i}')(x, train=train)
    y = nn.LayerNorm(1e-6, name='encoder_norm')(x[:, 0])
    if self.representation_size is not None:
      y = jnp.tanh(nn.Dense(self.representation_size, name='pre_logits')(y))
    if self.num_classes is None:
      return y
    # Zero-initialised head (section 3.2), as when fine-tuning.
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name='head')(y)


# Table 1; the patch size is in the name.
_SIZES = {'b': (768, 12, 12, 3072), 'l': (1024, 24, 16, 4096), 'h': (1280, 32, 16, 5120)}


def vit(size: str, patch_size: int, **overrides) -> ViT:
  """The Table 1 model `size` in b, l, h with `patch_size`, e.g. vit('b', 16) is ViT-B/16."""
  width, layers, heads, mlp = _SIZES[size]
  return ViT(**{**dict(patch_size=patch_size, hidden_dim=width, num_layers=layers,
                       num_heads=heads, mlp_dim=mlp), **overrides})


_PAPER = ('An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale '
          '(Dosovitskiy et al. 2020, arXiv:2010.11929)')
_TIMM_SIZES = {'b': 'base', 'l': 'large', 'h': 'huge'}
for _name, _size, _patch, _count in (('vit_b16', 'b', 16, 86_567_656),
                                     ('vit_b32', 'b', 32, 88_224_232),
                                     ('vit_l16', 'l', 16, 304_326_632),
                                     ('vit_h14', 'h', 14, 632_045_800)):
  zoo.register(_name, functools.partial(vit, _size, _patch), inputs=zoo.image_input(224, 224, 3),
               apply_kwargs={'train': False}, paper=_PAPER, reference_params=_count,
               reference_source=f'timm vit_{_TIMM_SIZES[_size]}_patch{_patch}_224, 1000 classes '
                                '(closed form in the module docstring)')

# A ViT for the offline 8x8 digits: 2x2 patches (16 tokens + class token), width 64, 4 layers.
# 136,138 parameters: patch conv 2*2*64 + 64, class token 64, positions 17*64, per block
# 2 LayerNorms 4*64 + attention 4*(64*64 + 64) + MLP (64*128 + 128) + (128*64 + 64), final
# LayerNorm 128, head 64*10 + 10.
zoo.register('digits_vit', functools.partial(ViT, num_classes=10, patch_size=2, hidden_dim=64,
                                             num_layers=4, num_heads=4, mlp_dim=128),
             inputs=zoo.image_input(8, 8, 1), apply_kwargs={'train': False}, paper=_PAPER,
             reference_params=136_138, reference_source='closed form in the comment above')
