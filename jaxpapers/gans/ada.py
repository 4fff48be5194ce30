"""Training Generative Adversarial Networks with Limited Data (Karras, Aittala, Hellsten, Laine,
Lehtinen, Aila 2020, arXiv:2006.06676): adaptive discriminator augmentation (ADA).

Every image the discriminator sees, real or generated, in D's and in G's updates, goes through the
same stochastic, differentiable pipeline (sec. 2, fig. 2), each transform applied to each image
with probability p (appendix B, the 'bgc' set):
  * pixel blitting: x-flip, 90-degree rotations, integer translation (uniform in +-0.125 of the
    image size);
  * general geometric: isotropic scaling (log-normal, std 0.2 ln 2), arbitrary rotation (with
    probability 1 - sqrt(1 - p), uniform angle), anisotropic scaling (log-normal, std 0.2 ln 2),
    fractional translation (normal, std 0.125 of the size);
  * colour: brightness (additive, normal std 0.2), contrast (log-normal, std 0.5 ln 2), luma flip,
    hue rotation (uniform angle about the luma axis), saturation (log-normal, std ln 2).
The geometric transforms compose into one 3x3 matrix per image that maps output pixel centres to
input positions, sampled bilinearly with reflection at the borders; the colour transforms compose
into one 4x4 affine matrix on RGB. Both are linear in the image, so gradients reach G through them.
Pixel-blitting transforms hit pixel centres exactly, so on their own they only permute pixels.
p is adjusted from the overfitting heuristic r_t = E[sign(D_train(x_real))] (eq. 2): every few
minibatches p += sign(r_t - target) * (images seen since the last adjustment) / speed, with target
0.6 and speed 500k images (p can go from 0 to 1 in 500k images), clipped at 0 (`adjust_p`).

Departures: the reference upsamples by 2 with a wavelet filter before the geometric warp and
downsamples after it (to suppress aliasing); here the warp is one bilinear resampling. The
cutout / noise / filter groups of the paper's full pipeline are left out (the paper's default
'bgc' leaves them out too). The transforms' inverses are drawn directly (every distribution here is
symmetric, so the law of the sampled maps is the same).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

TARGET = 0.6
SPEED_IMAGES = 500_000


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Which transforms are on, with the paper's strengths (appendix B)."""
  xflip: bool = True
  rotate90: bool = True
  xint: bool = True
  xint_max: float = 0.125
  scale: bool = True
  scale_std: float = 0.2
  rotate: bool = True
  aniso: bool = True
  aniso_std: float = 0.2
  xfrac: bool = True
  xfrac_std: float = 0.125
  brightness: bool = True
  brightness_std: float = 0.2
  contrast: bool = True
  contrast_std: float = 0.5
  lumaflip: bool = True
  hue: bool = True
  saturation: bool = True
  saturation_std: float = 1.0

  @property
  def geometric(self) -> bool:
    return any((self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac))

  @property
  def colour(self) -> bool:
    return any((self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation))


def _mat3(a, b, c, d, e, f):
  """[B] entries -> [B, 3, 3] matrices [[a, b, c], [d, e, f], [0, 0, 1]]."""
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack([jnp.stack([a, b, c], -1), jnp.stack([d, e, f], -1),
                    jnp.stack([zero, zero, one], -1)], -2)


def _scale(sx, sy):
  z = jnp.zeros_like(sx)
  return _mat3(sx, z, z, z, sy, z)


def _rotate(cos, sin):
  z = jnp.zeros_like(cos)
  return _mat3(cos, -sin, z, sin, cos, z)


def _translate(tx, ty):
  o, z = jnp.ones_like(tx), jnp.zeros_like(tx)
  return _mat3(o, z, tx, z, o, ty)


def geometric_matrices(key: jax.Array, batch: int, height: int, width: int, p: jax.Array,
                       cfg: AugmentConfig) -> jax.Array:
  """[B, 3, 3]: output pixel (x, y, 1), centred on the image, -> input position."""
  keys = iter(jax.random.split(key, 16))
  m = jnp.broadcast_to(jnp.eye(3), (batch, 3, 3))

  def gate(prob=None):
    return jax.random.uniform(next(keys), (batch,)) < (p if prob is None else prob)

  if cfg.xflip:
    i = jax.random.randint(next(keys), (batch,), 0, 2) * gate()
    m = m @ _scale(1.0 - 2.0 * i, jnp.ones((batch,)))
  if cfg.rotate90:
    k = jax.random.randint(next(keys), (batch,), 0, 4) * gate()
    cos, sin = jnp.array([1.0, 0, -1, 0])[k], jnp.array([0.0, 1, 0, -1])[k]
    m = m @ _rotate(cos, sin)
  if cfg.xint:
    t = jax.random.uniform(next(keys), (batch, 2), minval=-cfg.xint_max, maxval=cfg.xint_max)
    t = t * gate()[:, None]
    m = m @ _translate(jnp.round(t[:, 0] * width), jnp.round(t[:, 1] * height))
  if cfg.scale:
    s = jnp.where(gate(), jnp.exp2(jax.random.normal(next(keys), (batch,)) * cfg.scale_std), 1.0)
    m = m @ _scale(s, s)
  p_rot = 1.0 - jnp.sqrt(jnp.clip(1.0 - p, 0.0, 1.0))
  if cfg.rotate:
    theta = jax.random.uniform(next(keys), (batch,), minval=-np.pi, maxval=np.pi) * gate(p_rot)
    m = m @ _rotate(jnp.cos(theta), jnp.sin(theta))
  if cfg.aniso:
    s = jnp.where(gate(), jnp.exp2(jax.random.normal(next(keys), (batch,)) * cfg.aniso_std), 1.0)
    m = m @ _scale(s, 1.0 / s)
  if cfg.rotate:
    theta = jax.random.uniform(next(keys), (batch,), minval=-np.pi, maxval=np.pi) * gate(p_rot)
    m = m @ _rotate(jnp.cos(theta), jnp.sin(theta))
  if cfg.xfrac:
    t = jax.random.normal(next(keys), (batch, 2)) * cfg.xfrac_std * gate()[:, None]
    m = m @ _translate(t[:, 0] * width, t[:, 1] * height)
  return m


def colour_matrices(key: jax.Array, batch: int, p: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """[B, 4, 4] affine maps of homogeneous RGB."""
  keys = iter(jax.random.split(key, 12))
  v = np.array([1.0, 1.0, 1.0], np.float32) / np.sqrt(3.0)  # the luma axis
  vvt = np.outer(v, v)
  eye3 = np.eye(3, dtype=np.float32)
  cross = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], np.float32)

  def gate():
    return jax.random.uniform(next(keys), (batch,)) < p

  def affine(lin, shift=None):
    out = jnp.zeros((batch, 4, 4)).at[:, :3, :3].set(lin).at[:, 3, 3].set(1.0)
    return out if shift is None else out.at[:, :3, 3].set(shift)

  c = jnp.broadcast_to(jnp.eye(4), (batch, 4, 4))
  if cfg.brightness:
    b = jax.random.normal(next(keys), (batch,)) * cfg.brightness_std * gate()
    c = affine(jnp.broadcast_to(eye3, (batch, 3, 3)), b[:, None] * jnp.ones(3)) @ c
  if cfg.contrast:
    s = jnp.where(gate(), jnp.exp2(jax.random.normal(next(keys), (batch,)) * cfg.contrast_std), 1.0)
    c = affine(s[:, None, None] * eye3) @ c
  if cfg.lumaflip:
    i = jax.random.randint(next(keys), (batch,), 0, 2) * gate()
    c = affine(eye3 - 2.0 * i[:, None, None] * vvt) @ c
  if cfg.hue:
    theta = jax.random.uniform(next(keys), (batch,), minval=-np.pi, maxval=np.pi) * gate()
    cos, sin = jnp.cos(theta)[:, None, None], jnp.sin(theta)[:, None, None]
    c = affine(cos * eye3 + sin * cross + (1.0 - cos) * vvt) @ c  # Rodrigues' formula
  if cfg.saturation:
    s = jnp.where(gate(), jnp.exp2(jax.random.normal(next(keys), (batch,)) * cfg.saturation_std),
                  1.0)
    c = affine(vvt + (eye3 - vvt) * s[:, None, None]) @ c
  return c


def _warp(image: jax.Array, matrix: jax.Array) -> jax.Array:
  """One [H, W, C] image resampled at matrix @ (x, y, 1) for every centred output pixel."""
  h, w, _ = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing='ij')
  src = jnp.einsum('ij,jhw->ihw', matrix, jnp.stack([xs, ys, jnp.ones_like(xs)]))
  coords = [src[1] + (h - 1) / 2, src[0] + (w - 1) / 2]  # (row, col)
  per_channel = jax.vmap(
      lambda c: jax.scipy.ndimage.map_coordinates(c, coords, order=1, mode='reflect'),
      in_axes=-1, out_axes=-1)
  return per_channel(image)


def augment(key: jax.Array, images: jax.Array, p: jax.Array,
            cfg: AugmentConfig = AugmentConfig()) -> jax.Array:
  """images [B, H, W, C] (C = 3 for the colour transforms) augmented with probability p each."""
  b, h, w, c = images.shape
  geo_key, colour_key = jax.random.split(key)
  p = jnp.asarray(p, jnp.float32)
  if cfg.geometric:
    images = jax.vmap(_warp)(images, geometric_matrices(geo_key, b, h, w, p, cfg))
  if cfg.colour and c == 3:
    m = colour_matrices(colour_key, b, p, cfg)
    images = jnp.einsum('bij,bhwj->bhwi', m[:, :3, :3], images) + m[:, None, None, :3, 3]
  return images


def overfitting_heuristic(real_logits: jax.Array) -> jax.Array:
  """r_t = E[sign(D_train(x))] over real training images (eq. 2)."""
  return jnp.mean(jnp.sign(real_logits))


def adjust_p(p: jax.Array, r_t: jax.Array, num_images: int, target: float = TARGET,
             speed_images: int = SPEED_IMAGES) -> jax.Array:
  """p + sign(r_t - target) * num_images / speed_images, at least 0 (and at most 1)."""
  return jnp.clip(p + jnp.sign(r_t - target) * num_images / speed_images, 0.0, 1.0)
