"""EQ-T and EQ-T_frac (Alias-Free GANs, arXiv:2106.12423, sec. 3, appendix E) of random-weight
32x32 generators: StyleGAN3-T and -R (`stylegan3_t_32_generator`, and the same with config R's 1x1
convolutions and radial filters) against StyleGAN2 (`stylegan2_32_generator`) whose 4x4 constant is
replaced by Fourier features (`fourier_input=True`, StyleGAN3's config B), since a constant cannot
be translated.

    python scripts/eq_t.py --num_batches=8 --batch=8

Random weights give no natural image scale, and the PSNR's peak is fixed (2, images in [-1, 1]), so
each generator's images are divided by a constant making the untranslated images' std 0.5 (measured
on the first batch) before the errors are taken; the same constant scales the translated ones.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxpapers import zoo
from jaxpapers.gans import equivariance, stylegan3

flags.DEFINE_integer('num_batches', 8, 'batches, one random translation each')
flags.DEFINE_integer('batch', 8, 'latents per batch')
flags.DEFINE_integer('seed', 0, 'seed of the weights, latents and translations')
FLAGS = flags.FLAGS

GENERATORS = {
    'StyleGAN2 + Fourier input (stylegan2_32)': ('stylegan2_32_generator', dict(fourier_input=True)),
    'StyleGAN3-T (stylegan3_t_32)': ('stylegan3_t_32_generator', {}),
    'StyleGAN3-R (stylegan3_t_32, config R options)': (
        'stylegan3_t_32_generator', dict(conv_kernel=1, use_radial_filters=True)),
}


def measure(name: str, overrides: dict, resolution: int = 32) -> tuple[int, float, float]:
  g = zoo.build(name, **overrides)
  key = jax.random.key(FLAGS.seed)
  variables = g.init(key, jnp.zeros((1, g.z_dim)))
  z = jax.random.normal(jax.random.fold_in(key, 1), (FLAGS.num_batches, FLAGS.batch, g.z_dim))
  ws = jax.jit(lambda z: g.apply(variables, z, method='mapping_ws'))(z.reshape(-1, g.z_dim))
  ws = ws.reshape(FLAGS.num_batches, FLAGS.batch, *ws.shape[1:])
  synthesize = jax.jit(lambda ws, t: g.apply(variables, ws, t, method='synthesize'))
  scale = 0.5 / float(jnp.std(synthesize(ws[0], jnp.eye(3))))

  def images(index, transform):
    t = jnp.eye(3) if transform is None else jnp.asarray(transform)
    return np.asarray(synthesize(ws[index], t)) * scale

  results = []
  for fractional in (False, True):
    rng = np.random.default_rng(FLAGS.seed)
    results.append(equivariance.eq_t(images, FLAGS.num_batches, resolution, rng,
                                     fractional=fractional))
  return zoo.num_params(variables['params']), results[0], results[1]


def main(argv):
  del argv
  assert stylegan3  # registers the StyleGAN3 presets
  print('| generator | params | EQ-T (dB) | EQ-T_frac (dB) | wall (s) |')
  print('|---|---:|---:|---:|---:|')
  for label, (name, overrides) in GENERATORS.items():
    start = time.time()
    count, eqt, eqt_frac = measure(name, overrides)
    print(f'| {label} | {count:,} | {eqt:.2f} | {eqt_frac:.2f} | '
          f'{time.time() - start:.0f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
