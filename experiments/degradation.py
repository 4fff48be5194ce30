"""The degradation problem of Figures 1 and 6: deeper plain networks train worse, residual ones don't.

"Deep Residual Learning for Image Recognition", He, Zhang, Ren, Sun 2015, arXiv:1512.03385, sec. 4.2.

    python -m experiments.degradation --config=experiments/configs/degradation.py:distorted_digits \
        --workdir=runs/degradation [--config.train.steps=400]

Each network of `config.models` (plain-20, plain-56, ResNet-20, ResNet-56 by default) is trained
by `experiments.classify.Classify` through the shared loop, in `<workdir>/<model>`, with the same
seed; relaunching resumes unfinished runs. Then `<workdir>/training_error.png` draws the training
error (1 - the logged train-batch accuracy, smoothed) of the plain networks on the left and the
residual ones on the right, thin, with the test error in bold at each evaluation, as Figure 6; and
`<workdir>/summary.json` holds each network's training error over the last fifth of its run, its
final test error, and the deeper-minus-shallower differences the figure is about.

The data. CIFAR-10 is not available offline; the offline digits set (1,437 training images of 8x8)
is, and the CIFAR networks take it unchanged (maps 8, 4, 2). Clean, it is so easy that every
network soon fits it and training errors all approach zero, which hides the difference the paper
measures. Here each training batch is distorted on the device, as `DistortedDigits.augment`: a
random rotation, zoom, shear and translation (bilinear resampling) plus Gaussian pixel noise, drawn
afresh at every step. The training set becomes effectively unbounded and never memorised, so the
training error stays well above zero for the whole run and measures how well the optimiser fits
the task, which is what Figure 6 compares. The test split is evaluated clean.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import classify
from jaxpapers.errors import ConfigError
from jaxpapers.train import cli, devices, loop
from jaxpapers.train import metrics as metrics_lib


def random_affine(images: jax.Array, key: jax.Array, d: ml_collections.ConfigDict) -> jax.Array:
  """Warps each NHWC image by its own random rotation, zoom, shear and shift; adds pixel noise.

  Each output pixel samples the input (bilinearly, zero outside) at A (p - c) + c + t, with p the
  pixel, c the image centre, A = rotation @ shear / zoom and t the shift.
  """
  n, h, w, _ = images.shape
  k_angle, k_scale, k_shear, k_shift, k_noise = jax.random.split(key, 5)
  uniform = lambda k, shape=(n,): jax.random.uniform(k, shape, minval=-1.0, maxval=1.0)
  angle = jnp.deg2rad(d.rotation_degrees) * uniform(k_angle)
  zoom = 1.0 + d.scale * uniform(k_scale)
  shear = d.shear * uniform(k_shear)
  shift = d.translation * uniform(k_shift, (n, 2))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotation = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)  # [n, 2, 2]
  shearing = jnp.stack([jnp.stack([jnp.ones(n), jnp.zeros(n)], -1),
                        jnp.stack([shear, jnp.ones(n)], -1)], -2)  # column += shear * row
  a = rotation @ shearing / zoom[:, None, None]
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
  rows, cols = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing='ij')
  offsets = jnp.stack([rows.ravel(), cols.ravel()]) - centre[:, None]  # [2, h*w]
  coords = a @ offsets + (centre + shift)[:, :, None]  # [n, 2, h*w]

  def warp(image, coord):  # image [h, w, c], coord [2, h*w]
    sample = lambda channel: jax.scipy.ndimage.map_coordinates(
        channel, list(coord), order=1, mode='constant', cval=0.0)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image).reshape(image.shape)

  warped = jax.vmap(warp)(images, coords)
  noisy = warped + d.noise_std * jax.random.normal(k_noise, warped.shape, warped.dtype)
  return jnp.clip(noisy, 0.0, 1.0)


class DistortedDigits(classify.Classify):
  """`Classify` whose training batches are randomly warped and noised (see the module docstring)."""

  def augment(self, images, key):
    crop_key, warp_key = jax.random.split(key)
    return random_affine(super().augment(images, crop_key), warp_key, self.config.distortion)


def model_names(config: ml_collections.ConfigDict) -> list[str]:
  return [name.strip() for name in config.models.split(',') if name.strip()]


def run_model(config: ml_collections.ConfigDict, model: str, workdir: str,
              mesh: jax.sharding.Mesh | None = None) -> dict:
  """Trains (or resumes) one network of the figure in `<workdir>/<model>`; returns its results."""
  config = copy.deepcopy(config)
  config.model.name = model
  experiment = DistortedDigits(config, mesh or devices.make_mesh())
  return loop.train_and_evaluate(experiment, os.path.join(workdir, model))


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average over up to `window` points (fewer at the start), same length."""
  sums = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
  ends = np.arange(1, len(values) + 1)
  starts = np.maximum(ends - window, 0)
  return (sums[ends] - sums[starts]) / (ends - starts)


def error_curves(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (steps, error), 'test': (steps, error)} of one run, from its metrics.jsonl.

  The training error at a logged step is 1 - the mean accuracy of the training batches since the
  previous log line (the loop averages over them), on the distorted batches the network trained on.
  """
  curves = {}
  for split, prefix in (('train', 'train/'), ('test', 'eval/')):
    steps, accuracy = metrics_lib.read_history(workdir, prefix)['accuracy']
    curves[split] = (steps, 1.0 - accuracy)
  return curves


def summarize(workdirs: dict[str, str], results: dict[str, dict]) -> dict:
  """Each network's training error over the last fifth of its logged steps, test error, wall time;
  and, for plain and residual pairs alike, the deepest network's training error minus the
  shallowest's (positive: the deeper network trains worse, the degradation of Figure 6)."""
  summary = {'models': {}, 'deeper_minus_shallower_train_error': {}}
  for model, workdir in workdirs.items():
    curves = error_curves(workdir)
    train = curves['train'][1]
    summary['models'][model] = {
        'train_error_last_fifth': float(np.mean(train[-max(len(train) // 5, 1):])),
        'test_error': float(curves['test'][1][-1]),
        'steps': int(curves['train'][0][-1]),
        'wall_time_s': results[model].get('wall_time_s'),
    }
  for family, names in _families(list(workdirs)).items():
    if len(names) > 1:
      depth = lambda name: int(''.join(ch for ch in name if ch.isdigit()))
      shallow, deep = min(names, key=depth), max(names, key=depth)
      errors = {m: summary['models'][m]['train_error_last_fifth'] for m in (shallow, deep)}
      summary['deeper_minus_shallower_train_error'][family] = {
          'deeper': deep, 'shallower': shallow, 'difference': errors[deep] - errors[shallow]}
  return summary


def _families(models: Sequence[str]) -> dict[str, list[str]]:
  """Plain networks (Figure 6 left) and residual ones (right)."""
  plain = [m for m in models if m.startswith('plain')]
  return {'plain': plain, 'residual': [m for m in models if m not in plain]}


def plot(workdirs: dict[str, str], path: str, smoothing: int) -> str:
  """Figure 6: thin training-error curves and bold test-error curves, plain left, residual right."""
  import matplotlib  # imported here: only the plot needs it.
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  families = _families(list(workdirs))
  figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for ax, (family, models) in zip(axes, families.items()):
    for colour, model in zip(colours, models):
      curves = error_curves(workdirs[model])
      steps, train = curves['train']
      ax.plot(steps, 100 * smooth(train, smoothing), color=colour, lw=1.0, label=f'{model} train')
      steps, test = curves['test']
      ax.plot(steps, 100 * test, color=colour, lw=2.5, marker='o', ms=4, label=f'{model} test')
    ax.set_title(f'{family} networks')
    ax.set_xlabel('iterations')
    ax.grid(alpha=0.3)
    if models:
      ax.legend()
  axes[0].set_ylabel('error (%)')
  figure.suptitle('Degradation (He et al. 2015, Figure 6) on distorted 8x8 digits: thin = training '
                  f'error (train batches, {smoothing}-point moving average), bold = test error',
                  fontsize=9)
  figure.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return path


def run(config: ml_collections.ConfigDict, workdir: str,
        mesh: jax.sharding.Mesh | None = None) -> dict:
  """Every network of the figure, then the plot and summary.json; returns the summary."""
  models = model_names(config)
  if not models:
    raise ConfigError('config.models names no network; e.g. plain20,plain56,resnet20,resnet56')
  workdirs = {model: os.path.join(workdir, model) for model in models}
  results = {model: run_model(config, model, workdir, mesh) for model in models}
  summary = summarize(workdirs, results)
  summary['plot'] = plot(workdirs, os.path.join(workdir, 'training_error.png'), config.smoothing)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


if __name__ == '__main__':
  cli.run_program(run)
