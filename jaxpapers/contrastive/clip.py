"""CLIP: an image tower and a text tower trained with a symmetric contrastive loss.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford, Kim, Hallacy,
Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger, Sutskever 2021, arXiv:2103.00020).

What follows the paper and its released code (openai/CLIP `clip/model.py`):
  * Figure 3's loss (`clip_loss`): L2-normalised image and text embeddings, logits = image @ text^T
    scaled by exp(t) (t, the log of the inverse temperature, is a learned scalar initialised to
    log(1/0.07), section 2.5) and clipped so that the logits are scaled by at most 100, then the
    mean of the image->text and text->image cross-entropies with the matching pairs on the diagonal.
    The
    logits span the whole global batch: under `jax.jit` with the batch sharded over 'data' XLA forms
    the global matrix itself; `clip_loss_per_device` is the explicit per-device form (all-gather of
    the embeddings over 'data', each device scores its own rows against the global batch), and
    `sharded_clip_loss` wraps it in `jax.shard_map`.
  * The image tower is either the ViT of section 2.4 (`VisionTransformer`: a bias-free patch
    convolution, a class embedding, learned positions, the extra layer norm `ln_pre` before the
    transformer, `ln_post` on the class token, a bias-free projection `proj`) or the modified ResNet
    (`ModifiedResNet`: a stem of three 3x3 convolutions with an average pool instead of a max pool,
    anti-aliased strided convolutions, i.e. an average pool of the stride before each stride-1
    convolution (in the block after its 3x3 convolution and on the shortcut), and attention pooling:
    one query, the mean of the final feature map, attends to the flattened map plus learned
    positions; its output projection maps to the embedding width).
  * The text tower (`TextTransformer`) is a GPT-2 style pre-norm transformer under a causal mask
    over token embeddings plus learned positions; `ln_final`, then the feature at the end-of-text
    token, then the bias-free `text_projection`. The end-of-text token is found, as in the released
    code, as the position of the largest token id of each row (`argmax`, first occurrence): CLIP's
    BPE gives <|endoftext|> the highest id (49407 of 49408). Any tokenizer used with this tower must
    keep that convention: end-of-text is the vocabulary's highest id and appears once; padding
    after it (id 0 in CLIP) is never seen by the end-of-text position under the causal mask.
  * The residual blocks of both transformers: x + attn(ln_1(x)), then x + mlp(ln_2(x)), the MLP
    c_fc (4x wide) -> QuickGELU (x * sigmoid(1.702 x)) -> c_proj; LayerNorm epsilon 1e-5
    (PyTorch's).
  * Initialisation of the released code: token embeddings N(0, 0.02), text positions N(0, 0.01),
    ViT class embedding, positions and projection N(0, width^-1/2), text projection
    N(0, width^-1/2), attention-pool weights and positions N(0, C^-1/2), the last BatchNorm gain of
    every bottleneck zero; residual blocks: attention in-projections N(0, width^-1/2), output
    projections (attention and MLP) N(0, width^-1/2 (2 layers)^-1/2), c_fc N(0, (2 width)^-1/2).
    Departures: openai applies the residual-block initialisation to the text transformer only and
    leaves the ViT's blocks at PyTorch's defaults; here both towers use it. Biases start at zero and
    the remaining kernels (convolutions) use Flax's default (LeCun normal) instead of PyTorch's.

Parameter names follow openai's state dict where Flax allows (`conv1`, `class_embedding`,
`positional_embedding`, `ln_pre`, `transformer/resblocks_{i}/{ln_1,attn,ln_2,mlp/{c_fc,c_proj}}`,
`ln_post`, `proj`, `token_embedding`, `ln_final`, `text_projection`, `logit_scale`), with three
differences: the text tower's parameters sit under `text/` (openai keeps them at the top level),
attention uses separate `query`/`key`/`value`/`out` Dense layers (PyTorch's fused `in_proj_weight`
[3d, d] splits row-wise into them, transposed), and a ResNet block's shortcut is
`downsample_conv`/`downsample_bn` (openai's `downsample.0`/`downsample.1`). `logit_scale` holds the
log of the scale, as in openai's code.

Parameter counts (reference: openai/CLIP `model.py`, `sum(p.numel() for p in model.parameters())`;
for the ViTs this is also the state dict's total, for RN50 the state dict adds 53,303 BatchNorm
running statistics, which are state, not parameters). Closed forms, with V = 49,408 tokens, n = 77
positions, E = embedding width, R = 224 pixels:
  text tower   V t + n t + L_t (12 t^2 + 13 t) + 2 t + t E          (width t, L_t layers)
  ViT          3 p^2 d + d + ((R/p)^2 + 1) d + 2 d + L (12 d^2 + 13 d) + 2 d + d E
  ResNet       stem 27 h + 2 h + 9 h^2 + 2 h + 9 h w + 2 w (h = w/2), each bottleneck of width p
               with input c: c p + 13 p^2 + 12 p, plus 4 p c + 8 p for the first block of a stage
               (its shortcut), attention pool (C = 32 w): ((R/32)^2 + 1) C + 3 (C^2 + C) + C E + E
  plus 1 for the logit scale.
  preset        image tower                  t, L_t     image + text + 1 = total
  clip_rn50     w 64, stages 3-4-6-3, E 1024   512, 12    38,316,896 + 63,690,240 + 1 = 102,007,137
  clip_vit_b32  d 768, L 12, p 32, E 512       512, 12    87,849,216 + 63,428,096 + 1 = 151,277,313
  clip_vit_b16  d 768, L 12, p 16, E 512       512, 12    86,192,640 + 63,428,096 + 1 = 149,620,737
  clip_vit_l14  d 1024, L 24, p 14, E 768      768, 12  303,966,208 + 123,650,304 + 1 = 427,616,513
Heads: ViT width / 64, ResNet attention pool 32 w / 64, text width / 64 (as openai's `build_model`).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

from jaxpapers import zoo
from jaxpapers.nn.attention import MultiHeadAttention
from jaxpapers.nn.batch_norm import BatchNorm

Array = jax.Array

INIT_LOG_LOGIT_SCALE = math.log(1 / 0.07)  # Section 2.5: the temperature starts at 0.07.
MAX_LOGIT_SCALE = 100.0  # "clipped to prevent scaling the logits by more than 100".
_LAYER_NORM_EPSILON = 1e-5


def quick_gelu(x: Array) -> Array:
  """The released code's sigmoid approximation of GELU: x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def _normal(std: float) -> nn.initializers.Initializer:
  return nn.initializers.normal(std)


class MLP(nn.Module):
  """c_fc (4x wide) -> QuickGELU -> c_proj."""
  fc_std: float
  proj_std: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = quick_gelu(nn.Dense(4 * x.shape[-1], kernel_init=_normal(self.fc_std), name='c_fc')(x))
    return nn.Dense(x.shape[-1], kernel_init=_normal(self.proj_std), name='c_proj')(h)


class ResidualAttentionBlock(nn.Module):
  """x + attn(ln_1(x)), then x + mlp(ln_2(x)); the MLP is c_fc -> QuickGELU -> c_proj."""
  num_heads: int
  attn_std: float
  proj_std: float
  fc_std: float

  @nn.compact
  def __call__(self, x: Array, *, causal: bool = False) -> Array:
    h = nn.LayerNorm(_LAYER_NORM_EPSILON, name='ln_1')(x)
    attention = MultiHeadAttention(self.num_heads, kernel_init=_normal(self.attn_std),
                                   out_kernel_init=_normal(self.proj_std), name='attn')
    x = x + attention(h, causal=causal)
    h = nn.LayerNorm(_LAYER_NORM_EPSILON, name='ln_2')(x)
    return x + MLP(self.fc_std, self.proj_std, name='mlp')(h)


class Transformer(nn.Module):
  """`layers` residual attention blocks (`resblocks_{i}`), causal or not."""
  layers: int
  heads: int
  causal: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    width = x.shape[-1]
    attn_std, fc_std = width ** -0.5, (2 * width) ** -0.5
    proj_std = width ** -0.5 * (2 * self.layers) ** -0.5
    for i in range(self.layers):
      x = ResidualAttentionBlock(self.heads, attn_std, proj_std, fc_std,
                                 name=f'resblocks_{i}')(x, causal=self.causal)
    return x


class VisionTransformer(nn.Module):
  """CLIP's ViT: `images [B, H, W, 3] -> embeddings [B, output_dim]`.

  Positions are sized from the image at `init` ((H/p)(W/p) + 1 of them); H and W must be multiples
  of `patch_size`.
  """
  patch_size: int
  width: int
  layers: int
  heads: int
  output_dim: int

  @nn.compact
  def __call__(self, images: Array, *, train: bool = False) -> Array:
    del train  # No dropout or batch statistics in this tower.
    p, batch = self.patch_size, images.shape[0]
    if images.shape[1] % p or images.shape[2] % p:
      raise ValueError(f'image size {images.shape[1]}x{images.shape[2]} is not a multiple of the '
                       f'patch size {p}')
    scale = self.width ** -0.5
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding='VALID', use_bias=False,
                name='conv1')(images)
    x = x.reshape(batch, -1, self.width)  # Patches in raster order.
    cls = self.param('class_embedding', _normal(scale), (self.width,))
    x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.width)), x], axis=1)
    x = x + self.param('positional_embedding', _normal(scale), x.shape[1:])
    x = nn.LayerNorm(_LAYER_NORM_EPSILON, name='ln_pre')(x)
    x = Transformer(self.layers, self.heads, name='transformer')(x)
    x = nn.LayerNorm(_LAYER_NORM_EPSILON, name='ln_post')(x[:, 0])
    return x @ self.param('proj', _normal(scale), (self.width, self.output_dim))


def _avg_pool(x: Array, size: int) -> Array:
  return nn.avg_pool(x, (size, size), strides=(size, size)) if size > 1 else x


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> avg-pool(stride) -> 1x1 (x4 wide); the shortcut is avg-pool -> 1x1 -> BN."""
  planes: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    # PyTorch's BatchNorm momentum 0.1 is Flax's 0.9 (the weight of the running value).
    norm = functools.partial(BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5)
    conv = functools.partial(nn.Conv, use_bias=False)
    out = nn.relu(norm(name='bn1')(conv(self.planes, (1, 1), name='conv1')(x)))
    out = nn.relu(norm(name='bn2')(conv(self.planes, (3, 3), padding=((1, 1), (1, 1)),
                                        name='conv2')(out)))
    out = _avg_pool(out, self.stride)
    out = conv(4 * self.planes, (1, 1), name='conv3')(out)
    # Zero gain: each residual branch starts as the identity's complement (openai's init).
    out = norm(scale_init=nn.initializers.zeros, name='bn3')(out)
    identity = x
    if self.stride > 1 or x.shape[-1] != 4 * self.planes:
      identity = conv(4 * self.planes, (1, 1), name='downsample_conv')(_avg_pool(x, self.stride))
      identity = norm(name='downsample_bn')(identity)
    return nn.relu(out + identity)


class AttentionPool2d(nn.Module):
  """The mean of the feature map, as the only query, attends over [mean; map] + positions."""
  num_heads: int
  output_dim: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height * width, channels)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
    std = channels ** -0.5
    x = x + self.param('positional_embedding', _normal(std), (height * width + 1, channels))
    # openai computes every position's output and keeps the first; only the mean's query matters.
    out = MultiHeadAttention(self.num_heads, out_features=self.output_dim, kernel_init=_normal(std),
                             name='attn')(x[:, :1], x)
    return out[:, 0]


class ModifiedResNet(nn.Module):
  """CLIP's ResNet: `images [B, H, W, 3] -> embeddings [B, output_dim]` (H, W multiples of 32)."""
  layers: Sequence[int]
  output_dim: int
  heads: int
  width: int = 64

  @nn.compact
  def __call__(self, images: Array, *, train: bool = False) -> Array:
    if images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f'image size {images.shape[1]}x{images.shape[2]} is not a multiple of 32')
    norm = functools.partial(BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5)
    x = images
    for i, (features, stride) in enumerate(((self.width // 2, 2), (self.width // 2, 1),
                                            (self.width, 1)), start=1):
      x = nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                  use_bias=False, name=f'conv{i}')(x)
      x = nn.relu(norm(name=f'bn{i}')(x))
    x = _avg_pool(x, 2)
    for stage, blocks in enumerate(self.layers):
      for j in range(blocks):
        stride = 2 if stage > 0 and j == 0 else 1
        block = Bottleneck(self.width * 2 ** stage, stride, name=f'layer{stage + 1}_{j}')
        x = block(x, train=train)
    return AttentionPool2d(self.heads, self.output_dim, name='attnpool')(x)


class TextTransformer(nn.Module):
  """`tokens [B, L] int -> embeddings [B, output_dim]`, the feature at the end-of-text token.

  L may be shorter than `context_length` (the first L positions are used).
  """
  vocab_size: int
  context_length: int
  width: int
  layers: int
  heads: int
  output_dim: int

  @nn.compact
  def __call__(self, tokens: Array) -> Array:
    length = tokens.shape[1]
    if length > self.context_length:
      raise ValueError(f'{length} tokens exceed the context length {self.context_length}')
    x = nn.Embed(self.vocab_size, self.width, embedding_init=_normal(0.02),
                 name='token_embedding')(tokens)
    positions = self.param('positional_embedding', _normal(0.01), (self.context_length, self.width))
    x = x + positions[:length]
    x = Transformer(self.layers, self.heads, causal=True, name='transformer')(x)
    x = nn.LayerNorm(_LAYER_NORM_EPSILON, name='ln_final')(x)
    x = eot_features(x, tokens)
    return x @ self.param('text_projection', _normal(self.width ** -0.5),
                          (self.width, self.output_dim))


def eot_features(x: Array, tokens: Array) -> Array:
  """x[b, argmax_l tokens[b, l]]: each row's state at its end-of-text (highest-id) token."""
  return x[jnp.arange(x.shape[0]), jnp.argmax(tokens, axis=-1)]


class CLIP(nn.Module):
  """`clip(images, tokens, train=False) -> (image_embeddings, text_embeddings, log_logit_scale)`.

  The embeddings are not normalised (`clip_loss` does that). `vision_layers` an int gives the ViT
  image tower (with `vision_patch_size`), a sequence of four stage depths the modified ResNet.
  `encode_image` / `encode_text` run one tower (`model.apply(variables, x, method='encode_text')`).
  `train` only matters for the ResNet's batch statistics (pass `mutable=['batch_stats']`).
  """
  embed_dim: int
  vision_layers: int | Sequence[int]
  vision_width: int
  vocab_size: int
  context_length: int
  text_width: int
  text_layers: int
  text_heads: int
  vision_patch_size: int | None = None
  vision_heads: int | None = None  # default: width / 64 (ViT), 32 width / 64 (ResNet)

  def setup(self):
    if isinstance(self.vision_layers, int):
      self.visual = VisionTransformer(self.vision_patch_size, self.vision_width, self.vision_layers,
                                      self.vision_heads or self.vision_width // 64, self.embed_dim)
    else:
      self.visual = ModifiedResNet(tuple(self.vision_layers), self.embed_dim,
                                   self.vision_heads or self.vision_width * 32 // 64,
                                   self.vision_width)
    self.text = TextTransformer(self.vocab_size, self.context_length, self.text_width,
                                self.text_layers, self.text_heads, self.embed_dim)
    self.logit_scale = self.param('logit_scale', nn.initializers.constant(INIT_LOG_LOGIT_SCALE), ())

  def encode_image(self, images: Array, train: bool = False) -> Array:
    return self.visual(images, train=train)

  def encode_text(self, tokens: Array) -> Array:
    return self.text(tokens)

  def __call__(self, images: Array, tokens: Array, train: bool = False):
    return self.encode_image(images, train), self.encode_text(tokens), self.logit_scale


def l2_normalize(x: Array) -> Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def logit_scale(log_logit_scale: Array) -> Array:
  """exp(t), clipped at 100 (its gradient is zero above the clip)."""
  return jnp.minimum(jnp.exp(log_logit_scale), MAX_LOGIT_SCALE)


def clip_loss(image_features: Array, text_features: Array, log_logit_scale: Array) -> Array:
  """Figure 3: symmetric cross-entropy over the [N, N] cosine-similarity logits of a batch."""
  image = l2_normalize(image_features.astype(jnp.float32))
  text = l2_normalize(text_features.astype(jnp.float32))
  logits = logit_scale(log_logit_scale) * image @ text.T
  labels = jnp.arange(logits.shape[0])
  loss_i = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  loss_t = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
  return (loss_i.mean() + loss_t.mean()) / 2


def clip_loss_per_device(image_features: Array, text_features: Array, log_logit_scale: Array,
                         axis_name: str = 'data') -> Array:
  """`clip_loss` over the global batch, called in per-device code with this device's rows.

  Each device gathers every device's normalised embeddings, scores its own images against all
  texts and its own texts against all images ([n, N] logits each, not the whole [N, N] matrix), and
  the per-row cross-entropies are summed over devices. Every device returns the same value: the
  loss of the global batch, whose gradient flows back through the gather to every device's rows.
  """
  image = l2_normalize(image_features.astype(jnp.float32))
  text = l2_normalize(text_features.astype(jnp.float32))
  all_image = lax.all_gather(image, axis_name, tiled=True)
  all_text = lax.all_gather(text, axis_name, tiled=True)
  scale = logit_scale(log_logit_scale)
  local = image.shape[0]
  labels = lax.axis_index(axis_name) * local + jnp.arange(local)  # Global rows of this shard.
  loss_i = optax.softmax_cross_entropy_with_integer_labels(scale * image @ all_text.T, labels)
  loss_t = optax.softmax_cross_entropy_with_integer_labels(scale * text @ all_image.T, labels)
  return lax.psum(loss_i.sum() + loss_t.sum(), axis_name) / (2 * all_image.shape[0])


def sharded_clip_loss(mesh: Mesh, axis_name: str = 'data'):
  """`clip_loss_per_device` under `jax.shard_map`: (image, text, log scale) -> global-batch loss.

  The embeddings are split over `axis_name` (their leading axis must divide evenly), the scale is
  replicated; usable inside `jax.jit` (e.g. a train step), gradients included.
  """
  return jax.shard_map(functools.partial(clip_loss_per_device, axis_name=axis_name), mesh=mesh,
                       in_specs=(P(axis_name), P(axis_name), P()), out_specs=P(), check_vma=False)


# openai's released configurations (clip/__init__.py `_MODELS`, shapes read by `build_model`).
_PRESETS = {
    'clip_rn50': dict(embed_dim=1024, vision_layers=(3, 4, 6, 3), vision_width=64, text_width=512,
                      text_heads=8),
    'clip_vit_b32': dict(embed_dim=512, vision_layers=12, vision_width=768, vision_patch_size=32,
                         text_width=512, text_heads=8),
    'clip_vit_b16': dict(embed_dim=512, vision_layers=12, vision_width=768, vision_patch_size=16,
                         text_width=512, text_heads=8),
    'clip_vit_l14': dict(embed_dim=768, vision_layers=24, vision_width=1024, vision_patch_size=14,
                         text_width=768, text_heads=12),
}
_COUNTS = {'clip_rn50': 102_007_137, 'clip_vit_b32': 151_277_313, 'clip_vit_b16': 149_620_737,
           'clip_vit_l14': 427_616_513}
_OPENAI_NAMES = {'clip_rn50': 'RN50', 'clip_vit_b32': 'ViT-B/32', 'clip_vit_b16': 'ViT-B/16',
                 'clip_vit_l14': 'ViT-L/14'}


def clip_preset(name: str, **overrides) -> CLIP:
  """One of openai's released models by zoo name, e.g. clip_preset('clip_vit_b32')."""
  return CLIP(**{**dict(vocab_size=49408, context_length=77, text_layers=12), **_PRESETS[name],
                 **overrides})


def _inputs(resolution: int = 224, context_length: int = 77):
  return lambda: (jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32),
                  jax.ShapeDtypeStruct((1, context_length), jnp.int32))


_PAPER = ('Learning Transferable Visual Models From Natural Language Supervision '
          '(Radford et al. 2021, arXiv:2103.00020)')
for _name in _PRESETS:
  zoo.register(_name, functools.partial(clip_preset, _name), inputs=_inputs(),
               apply_kwargs={'train': False}, paper=_PAPER, reference_params=_COUNTS[_name],
               reference_source=f'openai/CLIP {_OPENAI_NAMES[_name]}, model.parameters() '
                                '(closed form in the module docstring)')

# Small towers for the offline captioned shapes (32x32 images, experiments/configs/clip.py), with
# the word tokenizer's 31 tokens and a 16-token context (the longest caption is 12 tokens with its
# start and end); heads 64 wide as openai's width / 64 where the width allows. `_tiny` ones are
# for tests.
_SHAPES = dict(vocab_size=31, context_length=16)
_SHAPES_PRESETS = {
    'clip_shapes_vit': dict(embed_dim=128, vision_layers=4, vision_width=128, vision_patch_size=8,
                            vision_heads=2, text_width=128, text_layers=4, text_heads=2),
    # 32 * 16 / 64 = 8 heads over the 512-wide final feature map, as openai's ResNets.
    'clip_shapes_resnet': dict(embed_dim=128, vision_layers=(1, 1, 1, 1), vision_width=16,
                               vision_heads=8, text_width=128, text_layers=4, text_heads=2),
    'clip_shapes_tiny': dict(embed_dim=16, vision_layers=1, vision_width=16, vision_patch_size=8,
                             vision_heads=2, text_width=16, text_layers=1, text_heads=2),
    'clip_shapes_tiny_resnet': dict(embed_dim=16, vision_layers=(1, 1, 1, 1), vision_width=8,
                                    vision_heads=2, text_width=16, text_layers=1, text_heads=2),
}
for _name, _kwargs in _SHAPES_PRESETS.items():
  zoo.register(_name, functools.partial(CLIP, **_SHAPES, **_kwargs),
               inputs=_inputs(32, _SHAPES['context_length']), apply_kwargs={'train': False},
               paper=_PAPER, reference_params=None,
               reference_source='project preset for the offline captioned shapes')
