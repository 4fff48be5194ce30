"""Sample quality against the number of sampling steps, every sampler on one trained DDPM.

    python scripts/ddpm_sampling_table.py --run_dir=runs/ddpm_digits [--num_samples=500]

Papers (one model trained once with T = 1000 steps, sampled without retraining):
  * DDPM (Ho, Jain, Abbeel 2020, arXiv:2006.11239), Algorithm 2: ancestral sampling over all T
    steps, with sigma^2 = beta ('fixed_large', the paper's CIFAR-10 choice) or beta~
    ('fixed_small').
  * Improved DDPM (Nichol & Dhariwal 2021, arXiv:2102.09672), sec. 4: the same sampler on S evenly
    strided steps with the betas recomputed for them (a model trained with learned variances uses
    those instead of the two fixed ones).
  * DDIM (Song, Meng, Ermon 2020, arXiv:2010.02502), eq. 12 with eta = 0 on the same S steps.
  * FastDPM (Kong & Ping 2021, arXiv:2106.00132), sec. 4: STEP (S of the T steps, quadratic
    spacing) and VAR (a short quadratic variance schedule mapped to continuous steps), each with the
    DDPM-style (kappa = 1) and DDIM-style (kappa = 0) reverse process; quadratic is FastDPM's choice
    for CIFAR-10. STEP with kappa = 0 is DDIM on DDIM's CIFAR-10 steps, STEP with kappa = 1 is
    DDIM's eta = 1.

Every sampler starts from the same N initial noises x_T (and the stochastic ones draw from the same
key), so rows differ only in the sampler. Samples are scored with the fixed digits classifier of
`jaxpapers/evaluators/sample_quality.py` (trained once, cached in `<run_dir>/classifier`): the Frechet
distance of their penultimate features to those of the training split (an FID analogue) and the
classifier score exp(E KL(p(y|x) || p(y))) (an Inception-score analogue; 10 is the maximum).
The distance's estimate depends on the number of images, so it is also given for the first 360
samples, as many as the held-out real images. Because the reference is the training set, a model
that copied training images would score well: the median pixel distance from each sample to its
nearest training image, beside the same for the held-out images, shows whether it does.
Baselines: the held-out real test split (360 images), Gaussian noise, and the untrained model
(its output layer starts at zero, so it predicts eps = 0) with the 1000-step sampler.

Writes to --out (default `<run_dir>/sampling`): results.json, table.md, quality_vs_steps.png, and
one sample grid per row in grids/. The papers' CIFAR-10 FIDs stand beside ours for the shape of
the curve only: different data, network and feature extractor. They are DDIM's Table 1 as we
remember it (we could not open the paper here to re-check the figures); FastDPM's own tables could
not be retrieved, so its rows carry none.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging

# Not --workdir: experiments/ddpm.py's command line (jaxpapers.train.cli) defines that flag.
_RUN = flags.DEFINE_string('run_dir', None, 'The --workdir of a finished experiments/ddpm.py run.',
                           required=True)
_OUT = flags.DEFINE_string('out', None, 'Output directory (default: <run_dir>/sampling).')
_NUM = flags.DEFINE_integer('num_samples', 500, 'Samples per sampler.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the initial noise and of the sampling noise.')
_STEPS = flags.DEFINE_list('steps', ['10', '20', '50', '100'], 'Short chain lengths S.')
_FASTDPM_STEPS = flags.DEFINE_list('fastdpm_steps', ['10', '20', '50'], 'FastDPM chain lengths.')

# DDIM Table 1, CIFAR-10 FID (50k samples) by number of steps S; see the module docstring.
DDIM_TABLE1 = {
    'eta=0': {10: 13.36, 20: 6.84, 50: 4.67, 100: 4.16, 1000: 4.04},
    'eta=1': {10: 41.07, 20: 18.36, 50: 8.01, 100: 5.78, 1000: 4.73},
    'sigma_hat': {10: 367.43, 20: 133.37, 50: 32.72, 100: 9.99, 1000: 3.17},
}
PAPER_SOURCE = {
    'eta=0': 'DDIM Tab. 1, eta=0 (quadratic steps)',
    'eta=1': 'DDIM Tab. 1, eta=1 (quadratic steps)',
    'sigma_hat': 'DDIM Tab. 1, sigma-hat = DDPM (quadratic steps)',
}


def sampler_rows(config, steps: list[int], fastdpm_steps: list[int]) -> list[dict]:
  """Every (family, S) of the table: its reverse process, sampler and paper reference."""
  from jaxpapers.diffusion import samplers
  from experiments import ddpm

  betas = ddpm.make_betas(config)
  num_timesteps = config.diffusion.num_timesteps
  even = lambda s: samplers.respaced_schedule(
      betas, samplers.evenly_spaced_timesteps(num_timesteps, s) if s < num_timesteps else None)
  lengths = sorted({*steps, num_timesteps})
  if config.diffusion.learn_sigma:
    ancestral = [('learned_range', 'DDPM ancestral, learned sigma (Improved DDPM)', None,
                  'ancestral_learned')]
  else:
    ancestral = [('fixed_large', 'DDPM ancestral, sigma^2 = beta', 'sigma_hat', 'ancestral_beta'),
                 ('fixed_small', 'DDPM ancestral, sigma^2 = beta~', 'eta=1',
                  'ancestral_beta_tilde')]
  rows = []
  for variance, family, paper, name in ancestral:
    rows += [dict(family=family, name=name, steps=s, schedule=even(s), kind='ancestral',
                  variance=variance, eta=0.0, paper=paper) for s in lengths]
  rows += [dict(family='DDIM, eta = 0', name='ddim_eta0', steps=s, schedule=even(s), kind='ddim',
                eta=0.0, paper='eta=0') for s in lengths]
  linear = config.diffusion.schedule == 'linear'
  for kappa, style, paper in ((1.0, 'DDPM-rev (kappa = 1)', 'eta=1'),
                              (0.0, 'DDIM-rev (kappa = 0)', 'eta=0')):
    rows += [dict(family=f'FastDPM STEP, {style}', name=f'fastdpm_step_kappa{kappa:g}', steps=s,
                  kind='ddim', eta=kappa, paper=paper,
                  schedule=samplers.respaced_schedule(
                      betas, samplers.step_timesteps(num_timesteps, s, 'quadratic')))
             for s in fastdpm_steps]
    if linear:  # VAR's continuous steps are defined for the linear schedule only.
      d = config.diffusion
      rows += [dict(family=f'FastDPM VAR, {style}', name=f'fastdpm_var_kappa{kappa:g}', steps=s,
                    kind='ddim', eta=kappa, paper=None,
                    schedule=samplers.var_schedule(
                        samplers.var_betas(s, d.beta_start, d.beta_end, num_timesteps, 'quadratic'),
                        d.beta_start, d.beta_end, num_timesteps))
               for s in fastdpm_steps]
  return rows


def _digits(split: str, data_dir: str | None):
  """A split of the offline digits: images as floats in [0, 1] [N, 8, 8, 1], and labels [N]."""
  import numpy as np
  from jaxpapers.data import pipeline

  examples = pipeline.in_memory(pipeline.load_source('sklearn_digits', split, data_dir))
  return (np.stack([e['image'] for e in examples]).astype(np.float32) / 255.0,
          np.array([e['label'] for e in examples]))


def nearest_neighbour_distance(images, train_images) -> float:
  """Median over `images` of the Euclidean pixel distance to the nearest training image."""
  import numpy as np

  a = images.reshape(len(images), -1).astype(np.float64)
  b = train_images.reshape(len(train_images), -1).astype(np.float64)
  squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T
  return float(np.median(np.sqrt(np.maximum(squared.min(axis=1), 0.0))))


def markdown_table(baselines: dict[str, dict], rows: list[dict], footer: str) -> str:
  lines = ['| sampler | steps (NFE) | Frechet distance | FD, first 360 | classifier score | '
           'NN distance to train | paper CIFAR-10 FID (source) | sampling s |',
           '|---|---:|---:|---:|---:|---:|---|---:|']

  def cells(r):
    return (f'{r["frechet_distance"]:.2f} | {r["frechet_distance_matched"]:.2f} | '
            f'{r["classifier_score"]:.2f} | {r["nn_distance"]:.3f}')

  for name, result in baselines.items():
    steps = result.get('steps', '')
    seconds = f'{result["sample_s"]:.0f}' if 'sample_s' in result else ''
    lines.append(f'| {name} | {steps} | {cells(result)} | | {seconds} |')
  for row in rows:
    paper = row['paper']
    cell = (f'{DDIM_TABLE1[paper][row["steps"]]:.2f} ({PAPER_SOURCE[paper]})'
            if paper and row['steps'] in DDIM_TABLE1[paper] else '')
    # NFE can be below S when quadratic spacing repeats step 0 (FastDPM S = 50 -> 49).
    nfe = row['nfe'] if row['nfe'] == row['steps'] else f'{row["steps"]} ({row["nfe"]})'
    lines.append(f'| {row["family"]} | {nfe} | {cells(row)} | {cell} | {row["sample_s"]:.0f} |')
  return '\n'.join(lines + ['', footer])


def plot(baselines: dict[str, dict], rows: list[dict], path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(13, 5))
  families = list(dict.fromkeys(r['family'] for r in rows))
  for ax, key, label in ((axes[0], 'frechet_distance', 'Frechet distance (classifier features)'),
                         (axes[1], 'classifier_score', 'classifier score (IS analogue)')):
    for family in families:
      points = sorted((r['nfe'], r[key]) for r in rows if r['family'] == family)
      ax.plot(*zip(*points), marker='o', label=family,
              linestyle='--' if family.startswith('FastDPM') else '-')
    for (name, result), color in zip(baselines.items(), ('black', 'grey', 'brown')):
      ax.axhline(result[key], color=color, linestyle=':', label=name)
    ax.set_xscale('log')
    if key == 'frechet_distance':
      ax.set_yscale('log')
    ax.set_xlabel('sampling steps (network evaluations)')
    ax.set_ylabel(label)
    ax.grid(True, which='both', alpha=0.3)
  axes[1].legend(fontsize=7, loc='lower right')
  fig.suptitle('One DDPM (8x8 digits, T = 1000), many samplers: quality against steps')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np
  from jax.sharding import Mesh

  from experiments import classify, ddpm
  from jaxpapers.diffusion import samplers
  from jaxpapers.evaluators import sample_quality
  from jaxpapers.train import checkpoint, devices, metrics

  workdir = _RUN.value
  out = _OUT.value or os.path.join(workdir, 'sampling')
  os.makedirs(os.path.join(out, 'grids'), exist_ok=True)
  with open(os.path.join(workdir, 'results.json')) as f:
    run = json.load(f)
  config = ml_collections.ConfigDict(run['config'])
  mesh = Mesh(np.asarray(jax.devices()[:1]), (devices.DATA_AXIS,))
  experiment = ddpm.DDPM(config, mesh)

  # The EMA parameters of the last checkpoint (checkpoint.load_params returns `params` only).
  replicated = devices.replicated(mesh)
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                          jax.eval_shape(experiment.init, jax.random.PRNGKey(config.seed)))
  checkpointer = checkpoint.Checkpointer(workdir)
  state, _ = checkpointer.restore(abstract)
  checkpointer.close()
  # On the same sharding as the restored state: the compiled samplers are shared by both.
  untrained = jax.device_put(jax.jit(experiment.init)(jax.random.PRNGKey(config.seed)).params,
                             replicated)
  logging.info('restored step %d of %s', int(state.step), workdir)

  data_dir = config.data.data_dir or None
  classifier = sample_quality.load_classifier(
      classify.trained_classifier(os.path.join(workdir, 'classifier'), data_dir=data_dir or ''),
      'digits_cnn')
  train_images, _ = _digits('train', data_dir)
  test_images, test_labels = _digits('test', data_dir)
  reference = sample_quality.feature_statistics(classifier(train_images)[0])
  test_accuracy = float(np.mean(np.argmax(classifier(test_images)[1], -1) == test_labels))

  num, key = _NUM.value, jax.random.PRNGKey(_SEED.value)
  x_T = jax.random.normal(jax.random.fold_in(key, 0), (num, *experiment.image_shape))
  step_key = jax.random.fold_in(key, 1)
  jitted, executables = {}, {}

  def draw(params, row) -> tuple[np.ndarray, float]:
    """Samples of one row (images in [0, 1]) and the sampling time, compilation excluded."""
    sampler = (row['kind'], row.get('variance'))
    if sampler not in jitted:
      if row['kind'] == 'ancestral':
        variance = row['variance']
        fn = lambda p, schedule, x, k, eta: samplers.ancestral_sample(
            experiment.eps_fn(p), schedule, x, k, variance=variance,
            clip_denoised=config.sample.clip_denoised)
      else:
        fn = lambda p, schedule, x, k, eta: samplers.ddim_sample(
            experiment.eps_fn(p), schedule, x, k, eta=eta)
      jitted[sampler] = jax.jit(fn)
    args = (params, row['schedule'], x_T, step_key, jnp.float32(row['eta']))
    signature = (sampler, row['schedule'].model_t.shape, row['schedule'].model_t.dtype)
    if signature not in executables:
      executables[signature] = jitted[sampler].lower(*args).compile()
    start = time.perf_counter()
    images = jax.block_until_ready(executables[signature](*args))
    return ddpm.to_unit_range(images), time.perf_counter() - start

  def save_grid(images, name):
    metrics.save_image_grid(images[:100], os.path.join(out, 'grids', f'{name}.png'), scale=4)

  def evaluate(images) -> dict[str, float]:
    # The distance's estimate depends on N: also computed on as many samples as real test images.
    return {**classifier.quality(images, reference),
            'frechet_distance_matched': classifier.quality(images[:len(test_images)],
                                                           reference)['frechet_distance'],
            'nn_distance': nearest_neighbour_distance(images, train_images)}

  baselines = {'real held-out digits (test split)': evaluate(test_images),
               'Gaussian noise': evaluate(ddpm.to_unit_range(x_T))}
  save_grid(test_images, 'real_test')
  rows = sampler_rows(config, [int(s) for s in _STEPS.value],
                      [int(s) for s in _FASTDPM_STEPS.value])
  full_chain = next(r for r in rows if r['steps'] == config.diffusion.num_timesteps)
  images, seconds = draw(untrained, full_chain)
  baselines[f'untrained model, {full_chain["family"]}'] = {
      **evaluate(images), 'steps': full_chain['steps'], 'sample_s': seconds}
  save_grid(images, 'untrained')

  for row in rows:
    images, seconds = draw(state.ema_params, row)
    row.update(evaluate(images), sample_s=seconds, nfe=int(row['schedule'].model_t.shape[0]))
    save_grid(images, f'{row["name"]}_{row["steps"]}')
    logging.info('%s, %d steps: FD %.2f, score %.2f, %.1f s', row['family'], row['steps'],
                 row['frechet_distance'], row['classifier_score'], seconds)

  footer = (f'N = {num} samples per sampler, the same initial noise for all (held-out real: the '
            f'{len(test_images)} test images); reference statistics: the {len(train_images)} '
            f'training images. "FD, first 360": the distance from the first {len(test_images)} '
            'samples only, comparable with the held-out row. "NN distance to train": median '
            'Euclidean pixel distance (images in [0, 1]) from each image to its nearest training '
            'image; samples much closer than the held-out images would be copies. The classifier '
            f'is {100 * test_accuracy:.1f}% accurate on the test split. Model: step '
            f'{int(state.step)} of {workdir}, EMA parameters.')
  table = markdown_table(baselines, rows, footer)
  print(table)
  with open(os.path.join(out, 'table.md'), 'w') as f:
    f.write(table + '\n')
  plot(baselines, rows, os.path.join(out, 'quality_vs_steps.png'))
  with open(os.path.join(out, 'results.json'), 'w') as f:
    json.dump({'baselines': baselines,
               'rows': [{k: v for k, v in r.items() if k != 'schedule'} for r in rows],
               'num_samples': num, 'seed': _SEED.value, 'step': int(state.step),
               'classifier_test_accuracy': test_accuracy,
               'workdir': workdir, 'devices': [str(d) for d in jax.devices()]}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
